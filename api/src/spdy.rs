//! SPDY/3.1 framing, the stream multiplexing `kubectl port-forward` speaks
//! (upstream's `httpstream/spdy`, built on `moby/spdystream`): control frames
//! (SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS,
//! WINDOW_UPDATE) and DATA frames, with name/value header blocks compressed
//! by zlib primed with SPDY/3's fixed dictionary. Each direction of a
//! connection keeps one zlib context for its whole life, so a connection has
//! one [`FrameReader`] and one [`FrameWriter`]. Entry points:
//! [`FrameReader::parse`], [`FrameWriter::encode`].

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The protocol version carried in every control frame.
pub const VERSION: u16 = 3;

/// FIN on a control frame (SYN_STREAM, SYN_REPLY, HEADERS) or a DATA frame:
/// the sender will send nothing more on that stream.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_INVALID_STREAM: u32 = 2;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;
pub const RST_INTERNAL_ERROR: u32 = 6;

/// Largest payload a frame's 24-bit length can carry.
pub const MAX_FRAME_LENGTH: usize = (1 << 24) - 1;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Name/value pairs of a header block; names are lower case on the wire,
/// several values of one name are joined with NUL.
pub type Headers = Vec<(String, String)>;

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// `(flags, id, value)` entries.
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this codec does not know; SPDY says to
    /// ignore it.
    Unknown {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("invalid {frame} frame: {message}")]
    InvalidFrame {
        frame: &'static str,
        message: String,
    },
    #[error("decompressing a header block: {0}")]
    Inflate(String),
    #[error("compressing a header block: {0}")]
    Deflate(String),
    #[error("frame payload of {0} bytes exceeds the 24-bit length")]
    TooLarge(usize),
}

/// SPDY/3's zlib dictionary for header blocks (draft 3, section 2.6.10.1):
/// length-prefixed common header names and values, then common strings.
pub fn header_dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &str = concat!(
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
            "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
            "501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        );
        let mut dict = Vec::with_capacity(1423);
        for word in WORDS {
            dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
            dict.extend_from_slice(word.as_bytes());
        }
        dict.extend_from_slice(TAIL.as_bytes());
        dict
    })
}

fn invalid(frame: &'static str, message: impl Into<String>) -> SpdyError {
    SpdyError::InvalidFrame {
        frame,
        message: message.into(),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes frames from the bytes a peer sent, keeping the peer's header
/// compression context across frames.
pub struct FrameReader {
    inflate: Decompress,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            inflate: Decompress::new(true),
        }
    }
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one whole frame off the front of `buf`; `None` until `buf`
    /// holds one.
    pub fn parse(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let frame: Vec<u8> = buf.drain(..8 + length).collect();
        let flags = frame[4];
        let payload = &frame[8..];
        if frame[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: be32(&frame[..4]) & 0x7fff_ffff,
                flags,
                data: payload.to_vec(),
            }));
        }
        let version = u16::from_be_bytes([frame[0] & 0x7f, frame[1]]);
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
        let kind = u16::from_be_bytes([frame[2], frame[3]]);
        let need = |name: &'static str, n: usize| {
            if payload.len() < n {
                Err(invalid(
                    name,
                    format!("{} bytes, at least {n} expected", payload.len()),
                ))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                Frame::SynStream {
                    stream_id: be32(payload) & 0x7fff_ffff,
                    associated_to: be32(&payload[4..]) & 0x7fff_ffff,
                    priority: payload[8] >> 5,
                    flags,
                    headers: self.header_block("SYN_STREAM", &payload[10..])?,
                }
            }
            TYPE_SYN_REPLY => {
                need("SYN_REPLY", 4)?;
                Frame::SynReply {
                    stream_id: be32(payload) & 0x7fff_ffff,
                    flags,
                    headers: self.header_block("SYN_REPLY", &payload[4..])?,
                }
            }
            TYPE_HEADERS => {
                need("HEADERS", 4)?;
                Frame::Headers {
                    stream_id: be32(payload) & 0x7fff_ffff,
                    flags,
                    headers: self.header_block("HEADERS", &payload[4..])?,
                }
            }
            TYPE_RST_STREAM => {
                need("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream_id: be32(payload) & 0x7fff_ffff,
                    status: be32(&payload[4..]),
                }
            }
            TYPE_SETTINGS => {
                need("SETTINGS", 4)?;
                let count = be32(payload) as usize;
                let entries = &payload[4..];
                if entries.len() != count.saturating_mul(8) {
                    return Err(invalid(
                        "SETTINGS",
                        format!("{count} entries in {} bytes", entries.len()),
                    ));
                }
                Frame::Settings {
                    flags,
                    entries: entries
                        .chunks_exact(8)
                        .map(|e| (e[0], be32(e) & 0x00ff_ffff, be32(&e[4..])))
                        .collect(),
                }
            }
            TYPE_PING => {
                need("PING", 4)?;
                Frame::Ping { id: be32(payload) }
            }
            TYPE_GOAWAY => {
                need("GOAWAY", 4)?;
                Frame::GoAway {
                    last_good_stream_id: be32(payload) & 0x7fff_ffff,
                    // SPDY/2 peers send no status.
                    status: if payload.len() >= 8 {
                        be32(&payload[4..])
                    } else {
                        0
                    },
                }
            }
            TYPE_WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream_id: be32(payload) & 0x7fff_ffff,
                    delta: be32(&payload[4..]) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(Some(frame))
    }

    fn header_block(&mut self, frame: &'static str, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        decode_header_block(&raw).map_err(|m| invalid(frame, m))
    }

    /// Inflates one frame's header block; the block ends at a sync flush,
    /// so everything it holds comes out now.
    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let result = self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = (self.inflate.total_in() - in_before) as usize;
            let produced = self.inflate.total_out() - out_before;
            input = &input[consumed..];
            match result {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(header_dictionary())
                        .map_err(|e| SpdyError::Inflate(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Inflate(e.to_string())),
            }
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && produced == 0 {
                return Err(SpdyError::Inflate("no progress".into()));
            }
        }
    }
}

/// The uncompressed form: a 32-bit count, then for each pair a 32-bit
/// length and the name, a 32-bit length and the value.
fn decode_header_block(raw: &[u8]) -> Result<Headers, String> {
    let mut rest = raw;
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("header block is truncated".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = be32(take(4)?) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(len)?).into_owned();
        let len = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(len)?).into_owned();
        if name.is_empty() {
            return Err("empty header name".into());
        }
        headers.push((name, value));
    }
    Ok(headers)
}

fn encode_header_block(headers: &Headers) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
        raw.extend_from_slice(value.as_bytes());
    }
    raw
}

/// Encodes frames for a peer, keeping this side's header compression
/// context across frames.
pub struct FrameWriter {
    deflate: Compress,
    primed: bool,
}

impl Default for FrameWriter {
    fn default() -> Self {
        FrameWriter {
            deflate: Compress::new(Compression::best(), true),
            primed: false,
        }
    }
}

impl FrameWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `frame`'s wire form to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let (kind, flags, payload) = match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LENGTH {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                flags,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x07) << 5);
                p.push(0);
                p.extend(self.deflate(&encode_header_block(headers))?);
                (TYPE_SYN_STREAM, *flags, p)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend(self.deflate(&encode_header_block(headers))?);
                (TYPE_SYN_REPLY, *flags, p)
            }
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend(self.deflate(&encode_header_block(headers))?);
                (TYPE_HEADERS, *flags, p)
            }
            Frame::RstStream { stream_id, status } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                (TYPE_RST_STREAM, 0, p)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (flag, id, value) in entries {
                    p.push(*flag);
                    p.extend_from_slice(&id.to_be_bytes()[1..]);
                    p.extend_from_slice(&value.to_be_bytes());
                }
                (TYPE_SETTINGS, *flags, p)
            }
            Frame::Ping { id } => (TYPE_PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut p = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                (TYPE_GOAWAY, 0, p)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                (TYPE_WINDOW_UPDATE, 0, p)
            }
            Frame::Unknown { kind } => (*kind, 0, Vec::new()),
        };
        if payload.len() > MAX_FRAME_LENGTH {
            return Err(SpdyError::TooLarge(payload.len()));
        }
        out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.push(flags);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&payload);
        Ok(())
    }

    /// Compresses one header block, ending at a sync flush so the peer can
    /// read it whole.
    fn deflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if !self.primed {
            self.deflate
                .set_dictionary(header_dictionary())
                .map_err(|e| SpdyError::Deflate(e.to_string()))?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Deflate(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn every_frame() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                flags: 0,
                headers: headers(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: headers(&[("x", "a\0b")]),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 1,
                entries: vec![(0, 4, 100), (1, 7, 65536)],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 3,
                delta: 4096,
            },
            Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            },
            Frame::Data {
                stream_id: 0x7fff_ffff,
                flags: 0,
                data: vec![],
            },
        ]
    }

    #[test]
    fn every_frame_type_survives_a_round_trip_on_one_connection() {
        let (mut writer, mut reader) = (FrameWriter::new(), FrameReader::new());
        let mut wire = Vec::new();
        for frame in every_frame() {
            writer.encode(&frame, &mut wire).unwrap();
        }
        // Twice: the second pass compresses against the history of the first.
        for frame in every_frame() {
            writer.encode(&frame, &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        while let Some(frame) = reader.parse(&mut wire).unwrap() {
            decoded.push(frame);
        }
        assert!(wire.is_empty());
        let expected: Vec<Frame> = every_frame().into_iter().chain(every_frame()).collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_frame_is_parsed_only_once_all_of_it_arrived() {
        let mut writer = FrameWriter::new();
        let mut wire = Vec::new();
        writer
            .encode(
                &Frame::Data {
                    stream_id: 1,
                    flags: 0,
                    data: b"hello".to_vec(),
                },
                &mut wire,
            )
            .unwrap();
        let mut reader = FrameReader::new();
        let mut partial = wire[..wire.len() - 1].to_vec();
        assert_eq!(reader.parse(&mut partial).unwrap(), None);
        partial.push(*wire.last().unwrap());
        assert!(matches!(
            reader.parse(&mut partial).unwrap(),
            Some(Frame::Data { data, .. }) if data == b"hello"
        ));
    }

    #[test]
    fn the_wire_layout_is_spdy3() {
        let mut wire = Vec::new();
        FrameWriter::new()
            .encode(&Frame::Ping { id: 0x01020304 }, &mut wire)
            .unwrap();
        assert_eq!(wire, [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 1, 2, 3, 4]);
        let mut wire = Vec::new();
        FrameWriter::new()
            .encode(
                &Frame::Data {
                    stream_id: 5,
                    flags: FLAG_FIN,
                    data: b"ab".to_vec(),
                },
                &mut wire,
            )
            .unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dict = header_dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(&dict[..11], b"\0\0\0\x07options");
        assert!(dict.ends_with(b",*,enq=0."));
    }

    /// A peer primed with the SPDY/3 dictionary announces it in the zlib
    /// header (FDICT with the dictionary's Adler-32), and a reader without
    /// the dictionary cannot make sense of the block.
    #[test]
    fn header_blocks_are_zlib_with_the_preset_dictionary() {
        let mut wire = Vec::new();
        FrameWriter::new()
            .encode(
                &Frame::SynReply {
                    stream_id: 1,
                    flags: 0,
                    headers: headers(&[("content-type", "text/plain")]),
                },
                &mut wire,
            )
            .unwrap();
        let block = &wire[12..];
        assert_eq!(block[0] & 0x0f, 8, "deflate method");
        assert_ne!(block[1] & 0x20, 0, "FDICT set");
        let adler = {
            let (mut a, mut b) = (1u32, 0u32);
            for &byte in header_dictionary() {
                a = (a + u32::from(byte)) % 65521;
                b = (b + a) % 65521;
            }
            (b << 16) | a
        };
        assert_eq!(be32(&block[2..6]), adler);
        let mut plain = Decompress::new(true);
        let mut out = Vec::with_capacity(256);
        let err = plain
            .decompress_vec(block, &mut out, FlushDecompress::Sync)
            .unwrap_err();
        assert_eq!(err.needs_dictionary(), Some(adler));
    }

    #[test]
    fn upper_case_header_names_go_out_lower_case() {
        let (mut writer, mut reader) = (FrameWriter::new(), FrameReader::new());
        let mut wire = Vec::new();
        writer
            .encode(
                &Frame::SynReply {
                    stream_id: 1,
                    flags: 0,
                    headers: headers(&[("StreamType", "data")]),
                },
                &mut wire,
            )
            .unwrap();
        let Some(Frame::SynReply { headers: h, .. }) = reader.parse(&mut wire).unwrap() else {
            panic!("not a SYN_REPLY");
        };
        assert_eq!(h, headers(&[("streamtype", "data")]));
    }

    #[test]
    fn another_version_is_refused() {
        let mut wire = vec![0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(
            FrameReader::new().parse(&mut wire),
            Err(SpdyError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn a_short_control_frame_is_refused() {
        let mut wire = vec![0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(
            FrameReader::new().parse(&mut wire),
            Err(SpdyError::InvalidFrame {
                frame: "RST_STREAM",
                ..
            })
        ));
    }
}
