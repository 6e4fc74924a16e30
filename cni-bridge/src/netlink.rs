//! Every change to links, addresses and routes, over rtnetlink (never `ip`).
//! Entry points: [`Netlink::host`] for the node's namespace,
//! [`Netlink::in_netns`] for a pod sandbox, and [`Netlink::batch`] to send
//! several requests in one round trip.
//!
//! The plugin is a short-lived process that makes a dozen requests, so the
//! socket is used synchronously: no async runtime to start, no connection
//! task. Requests that do not depend on each other's answers go out in one
//! `send` ([`Netlink::batch`]); the kernel handles the messages of a batch in
//! order, one after the other, and answers each with its own ACK or error.
//!
//! Entering a sandbox: a netlink socket belongs to the namespace of the
//! thread that created it, for its whole life. So [`Netlink::in_netns`]
//! `setns`es into the sandbox, opens the socket and `setns`es straight back;
//! nothing else runs in between. The plugin is single-threaded, so this is
//! cheaper than a helper thread (which, on a busy node, could wait a
//! millisecond or more to be scheduled) and keeps the process forkable
//! (see `retire`). No `unsafe` is needed (`nix::sched::setns` is safe).

use std::cell::Cell;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

pub const EEXIST: i32 = 17;
pub const ENODEV: i32 = 19;
/// `RTM_DELADDR` of an address the link does not carry.
pub const EADDRNOTAVAIL: i32 = 99;

/// Why a netlink step failed; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("CNI_NETNS: opening {path}: {source}")]
    OpenNetns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("entering netns {path}: {source}")]
    EnterNetns {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("netlink: {0}")]
    Transport(std::io::Error),
    #[error("bridge: {name:?} already exists but is not a bridge")]
    NotABridge { name: String },
    #[error("interface {name:?} already exists in {place}")]
    InterfaceExists { name: String, place: &'static str },
    #[error("{step} {target}: {source}")]
    Request {
        step: &'static str,
        target: String,
        source: std::io::Error,
    },
}

impl NetlinkError {
    /// The errno the kernel answered a request with, if that is what failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Name, index and MAC of one link, as the result JSON reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub up: bool,
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, the peer's ifindex (in the peer's namespace).
    pub peer_index: Option<u32>,
}

/// One request of a batch: the message, the flags beyond `NLM_F_REQUEST |
/// NLM_F_ACK`, the errnos that count as success, and what to call the step
/// in an error.
pub struct Request {
    message: RouteNetlinkMessage,
    flags: u16,
    tolerate: &'static [i32],
    step: &'static str,
    target: String,
}

impl Request {
    fn new(message: RouteNetlinkMessage, step: &'static str, target: impl Into<String>) -> Self {
        Self {
            message,
            flags: 0,
            tolerate: &[],
            step,
            target: target.into(),
        }
    }

    /// Treats these errnos as success (the answer is then empty).
    pub fn tolerate(mut self, errnos: &'static [i32]) -> Self {
        self.tolerate = errnos;
        self
    }

    /// `RTM_GETLINK` of the link called `name`; a missing link answers ENODEV.
    pub fn get_link(name: &str) -> Self {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(skip_stats());
        Self::new(RouteNetlinkMessage::GetLink(msg), "get link", name)
    }

    /// `RTM_GETLINK` by ifindex.
    pub fn get_link_by_index(index: u32) -> Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(skip_stats());
        Self::new(
            RouteNetlinkMessage::GetLink(msg),
            "get link",
            format!("ifindex {index}"),
        )
    }

    /// Creates a bridge, down.
    pub fn new_bridge(name: &str, mtu: Option<u32>) -> Self {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let mut req = Self::new(RouteNetlinkMessage::NewLink(msg), "create bridge", name);
        req.flags = NLM_F_CREATE | NLM_F_EXCL;
        req
    }

    /// Creates the veth pair in one request: `host_name` on the node,
    /// enslaved to `bridge` and up; its peer created directly inside the
    /// namespace `sandbox` as `sandbox_name`, still down. Both ends get `mtu`
    /// when given, and one queue each way (what the kernel would set them to
    /// after allocating a queue per possible CPU and waiting out an RCU grace
    /// period to drop the rest).
    ///
    /// The request asks for an echo (`NLM_F_ECHO`): since Linux 6.3 the answer
    /// then carries the host end's `RTM_NEWLINK` (name, MAC, peer index), which
    /// spares a `RTM_GETLINK` that would make the kernel settle the new link's
    /// pending carrier change on the spot.
    pub fn new_veth(
        host_name: &str,
        sandbox_name: &str,
        sandbox: &File,
        bridge: u32,
        mtu: Option<u32>,
    ) -> Self {
        // The peer cannot be created up: the kernel answers ENOTCONN when a
        // peer placed in another namespace carries IFF_UP. It is brought up
        // from inside the sandbox instead.
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(sandbox_name.to_string()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(sandbox.as_raw_fd()));
        let mut host = LinkMessage::default();
        host.header.flags = LinkFlags::Up;
        host.header.change_mask = LinkFlags::Up;
        host.attributes
            .push(LinkAttribute::IfName(host_name.to_string()));
        host.attributes.push(LinkAttribute::Controller(bridge));
        for end in [&mut peer, &mut host] {
            end.attributes.push(LinkAttribute::NumTxQueues(1));
            end.attributes.push(LinkAttribute::NumRxQueues(1));
        }
        if let Some(m) = mtu {
            peer.attributes.push(LinkAttribute::Mtu(m));
            host.attributes.push(LinkAttribute::Mtu(m));
        }
        host.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let mut req = Self::new(RouteNetlinkMessage::NewLink(host), "create veth", host_name);
        req.flags = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
        req
    }

    /// Sets a bridge port's hairpin mode (traffic may leave by the port it
    /// came in), naming the port, so it can follow its creation in a batch.
    pub fn set_hairpin(port_name: &str, on: bool) -> Self {
        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(port_name.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::PortKind(InfoPortKind::Bridge),
            NlLinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                on,
            )])),
        ]));
        Self::new(RouteNetlinkMessage::NewLink(msg), "set hairpin", port_name)
    }

    /// Sets a link's IFF_UP, and IFF_PROMISC when `promisc` is given.
    pub fn set_state(index: u32, up: bool, promisc: Option<bool>) -> Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.change_mask = LinkFlags::Up;
        if up {
            msg.header.flags = LinkFlags::Up;
        }
        if let Some(p) = promisc {
            msg.header.change_mask |= LinkFlags::Promisc;
            if p {
                msg.header.flags |= LinkFlags::Promisc;
            }
        }
        Self::new(
            RouteNetlinkMessage::SetLink(msg),
            if up {
                "bring up link"
            } else {
                "bring down link"
            },
            format!("ifindex {index}"),
        )
    }

    /// Renames a link; the kernel refuses (EBUSY) while it is up.
    pub fn rename(index: u32, name: &str) -> Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        Self::new(
            RouteNetlinkMessage::SetLink(msg),
            "rename link",
            format!("ifindex {index} to {name}"),
        )
    }

    /// Deletes a link (both ends, for a veth).
    pub fn delete_link(index: u32) -> Self {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        Self::new(
            RouteNetlinkMessage::DelLink(msg),
            "delete link",
            format!("ifindex {index}"),
        )
    }

    fn address_message(index: u32, addr: Ipv4Net) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = addr.prefix_len();
        msg.header.index = index;
        let ip = IpAddr::V4(addr.addr());
        msg.attributes.push(AddressAttribute::Address(ip));
        msg.attributes.push(AddressAttribute::Local(ip));
        if addr.prefix_len() < 31 {
            msg.attributes
                .push(AddressAttribute::Broadcast(addr.broadcast()));
        }
        msg
    }

    /// Adds `addr/prefix` to a link (EEXIST is the caller's to tolerate).
    pub fn add_address(index: u32, addr: Ipv4Net) -> Self {
        let mut req = Self::new(
            RouteNetlinkMessage::NewAddress(Self::address_message(index, addr)),
            "add address",
            addr.to_string(),
        );
        req.flags = NLM_F_CREATE | NLM_F_EXCL;
        req
    }

    /// Removes `addr/prefix` from a link.
    pub fn delete_address(index: u32, addr: Ipv4Net) -> Self {
        Self::new(
            RouteNetlinkMessage::DelAddress(Self::address_message(index, addr)),
            "delete address",
            addr.to_string(),
        )
    }

    /// Adds a route to `dst` via `gw` out of `index` (main table, proto static).
    pub fn add_route(dst: Ipv4Net, gw: Ipv4Addr, index: u32) -> Self {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                dst.network(),
            )));
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        msg.attributes.push(RouteAttribute::Oif(index));
        let mut req = Self::new(
            RouteNetlinkMessage::NewRoute(msg),
            "add route",
            format!("{dst} via {gw}"),
        );
        req.flags = NLM_F_CREATE | NLM_F_EXCL;
        req
    }
}

/// Asks the kernel to leave the counters out of a link answer: nothing here
/// reads them, and they are a good part of what would be parsed.
fn skip_stats() -> LinkAttribute {
    LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats])
}

/// Opens a sandbox path (`/var/run/netns/<name>`); `Ok(None)` when it is gone.
pub fn open_netns(path: &Path) -> Result<Option<File>, NetlinkError> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(NetlinkError::OpenNetns {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn open_socket() -> Result<Socket, NetlinkError> {
    let socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Connect)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(NetlinkError::Connect)?;
    Ok(socket)
}

/// Rounds a message length up to netlink's 4-byte alignment.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// A blocking netlink socket bound to one network namespace.
pub struct Netlink {
    socket: Socket,
    seq: Cell<u32>,
}

impl Netlink {
    /// A socket in the calling thread's namespace (the node's).
    pub fn host() -> Result<Self, NetlinkError> {
        Ok(Self {
            socket: open_socket()?,
            seq: Cell::new(1),
        })
    }

    /// A socket that lives in the namespace `ns` (see the module docs).
    pub fn in_netns(ns: &File, path: &Path) -> Result<Self, NetlinkError> {
        let home = File::open("/proc/thread-self/ns/net").map_err(NetlinkError::Connect)?;
        setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError::EnterNetns {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let socket = open_socket();
        if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
            // Cannot happen short of the kernel running out of memory; going
            // on would apply the node's changes inside the sandbox.
            eprintln!("cni-bridge: returning to the node's network namespace: {e}");
            std::process::abort();
        }
        Ok(Self {
            socket: socket?,
            seq: Cell::new(1),
        })
    }

    /// Sends every request in one datagram and collects each one's answer
    /// (the messages it returned; empty for a plain ACK), in order. The
    /// kernel handles all of them even when one fails; the first failure
    /// that is not tolerated is returned.
    pub fn batch(
        &self,
        requests: Vec<Request>,
    ) -> Result<Vec<Vec<RouteNetlinkMessage>>, NetlinkError> {
        let first_seq = self.seq.get();
        self.seq.set(first_seq.wrapping_add(requests.len() as u32));
        let mut buf = Vec::new();
        let mut meta = Vec::with_capacity(requests.len());
        for (i, req) in requests.into_iter().enumerate() {
            let dump = matches!(req.message, RouteNetlinkMessage::GetAddress(_));
            let mut msg = NetlinkMessage::from(req.message);
            msg.header.flags =
                NLM_F_REQUEST | req.flags | if dump { NLM_F_DUMP } else { NLM_F_ACK };
            msg.header.sequence_number = first_seq.wrapping_add(i as u32);
            msg.finalize();
            let start = buf.len();
            buf.resize(start + align(msg.buffer_len()), 0);
            msg.serialize(&mut buf[start..]);
            meta.push((req.tolerate, req.step, req.target));
        }
        self.socket.send(&buf, 0).map_err(NetlinkError::Transport)?;

        let mut answers: Vec<Vec<RouteNetlinkMessage>> = vec![Vec::new(); meta.len()];
        let mut outcome: Vec<Option<i32>> = vec![None; meta.len()];
        let mut pending = meta.len();
        let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
        while pending > 0 {
            rx.clear();
            self.socket
                .recv(&mut rx, 0)
                .map_err(NetlinkError::Transport)?;
            let mut offset = 0;
            while offset < rx.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..])
                    .map_err(|e| NetlinkError::Transport(std::io::Error::other(e.to_string())))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += align(len);
                let slot = msg.header.sequence_number.wrapping_sub(first_seq) as usize;
                if slot >= meta.len() || outcome[slot].is_some() {
                    continue;
                }
                let code = match msg.payload {
                    NetlinkPayload::InnerMessage(inner) => {
                        answers[slot].push(inner);
                        continue;
                    }
                    NetlinkPayload::Error(e) => e.raw_code().abs(),
                    NetlinkPayload::Done(d) => d.code.abs(),
                    _ => continue,
                };
                outcome[slot] = Some(code);
                pending -= 1;
            }
        }
        for (i, (tolerate, step, target)) in meta.into_iter().enumerate() {
            let code = outcome[i].unwrap_or(0);
            if code != 0 {
                if tolerate.contains(&code) {
                    answers[i].clear();
                    continue;
                }
                return Err(NetlinkError::Request {
                    step,
                    target,
                    source: std::io::Error::from_raw_os_error(code),
                });
            }
        }
        Ok(answers)
    }

    /// One request, one round trip.
    pub fn request(&self, request: Request) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        Ok(self.batch(vec![request])?.pop().unwrap_or_default())
    }

    /// The link called `name`, or `None`.
    pub fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let answer = self.request(Request::get_link(name).tolerate(&[ENODEV]))?;
        Ok(first_link(&answer))
    }

    /// Finds or creates the bridge, and brings it up. Two plugins racing to
    /// create it both succeed: the loser sees EEXIST and reads the winner's.
    pub fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        promisc: bool,
    ) -> Result<Link, NetlinkError> {
        let existing = match self.link(name)? {
            Some(l) => l,
            None => {
                let answers = self.batch(vec![
                    Request::new_bridge(name, mtu).tolerate(&[EEXIST]),
                    Request::get_link(name),
                ])?;
                first_link(&answers[1]).ok_or_else(|| NetlinkError::Request {
                    step: "create bridge",
                    target: name.into(),
                    source: std::io::Error::from_raw_os_error(ENODEV),
                })?
            }
        };
        if existing.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::NotABridge { name: name.into() });
        }
        if !existing.up || promisc {
            self.request(Request::set_state(existing.index, true, Some(promisc)))?;
        }
        Ok(existing)
    }

    /// The IPv4 addresses on a link.
    pub fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.index = index;
        let answer = self.request(Request::new(
            RouteNetlinkMessage::GetAddress(msg),
            "list addresses",
            format!("ifindex {index}"),
        ))?;
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .filter(|m| m.header.index == index)
            .filter_map(|m| {
                let prefix = m.header.prefix_len;
                m.attributes.into_iter().find_map(|a| match a {
                    AddressAttribute::Local(IpAddr::V4(ip))
                    | AddressAttribute::Address(IpAddr::V4(ip)) => Ipv4Net::new(ip, prefix).ok(),
                    _ => None,
                })
            })
            .collect())
    }

    /// Brings a link up by index.
    pub fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.request(Request::set_state(index, true, None))
            .map(drop)
    }

    pub fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        self.request(Request::set_state(index, false, None))
            .map(drop)
    }

    /// Deletes the link called `name`, waiting for the kernel to unregister
    /// it; returns whether it existed.
    pub fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link(name)? else {
            return Ok(false);
        };
        let answer = self.batch(vec![Request::delete_link(link.index).tolerate(&[ENODEV])]);
        answer.map(|_| true)
    }
}

/// The first link in an answer, if any.
pub fn first_link(answer: &[RouteNetlinkMessage]) -> Option<Link> {
    answer.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(to_link(l)),
        _ => None,
    })
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        name: String::new(),
        index: msg.header.index,
        mac: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
        peer_index: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Link(i) => link.peer_index = Some(*i),
            LinkAttribute::Address(bytes) => {
                link.mac = bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let NlLinkInfo::Kind(kind) = info {
                        link.kind = Some(match kind {
                            InfoKind::Bridge => "bridge".to_string(),
                            InfoKind::Veth => "veth".to_string(),
                            other => format!("{other:?}").to_lowercase(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    link
}
