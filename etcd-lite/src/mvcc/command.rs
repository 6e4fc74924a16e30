//! What travels through the Raft log, and what applying it yields.

use etcd_client::proto::{PbEvent, PbTxnRequest, PbTxnResponse};
use serde::{Deserialize, Serialize};

use super::MvccError;

/// One entry of the replicated log. Put and DeleteRange travel as a one-op [`Command::Txn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Txn(#[serde(with = "prost_bytes")] PbTxnRequest),
    Compact {
        revision: i64,
    },
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// A member announces its name and client URLs (etcd's "publish").
    PublishMember(MemberAttributes),
}

/// The attributes a member publishes about itself once it has started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAttributes {
    pub id: u64,
    pub name: String,
    pub client_urls: Vec<String>,
}

/// The result of applying one [`Command`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// The store's revision after the command (etcd's header revision).
    pub revision: i64,
    pub body: AppliedBody,
    /// The changes the command made, in revision order, with `prev_kv` filled in
    /// when the key had a previous live value and a watcher wants it (see
    /// [`super::Store::apply`]). Not replicated: the watch hub reads them on
    /// the member that applied the command.
    #[serde(skip)]
    pub events: Vec<PbEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppliedBody {
    /// Its response header is left empty: the server fills it.
    Txn(#[serde(with = "prost_bytes")] PbTxnResponse),
    Compacted,
    LeaseGranted {
        id: i64,
        ttl: i64,
    },
    /// `keys` were deleted with the lease.
    LeaseRevoked,
    MemberPublished,
    /// A Raft-internal entry (blank or membership) that changes nothing in the store.
    Noop,
    /// The command was refused deterministically on every member; nothing changed.
    Rejected(MvccError),
}

/// Serde adapter that carries a prost message as its protobuf encoding.
pub(crate) mod prost_bytes {
    use std::fmt;
    use std::marker::PhantomData;

    use prost::Message;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<M: Message, S: Serializer>(msg: &M, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&msg.encode_to_vec())
    }

    pub fn deserialize<'de, M: Message + Default, D: Deserializer<'de>>(
        d: D,
    ) -> Result<M, D::Error> {
        // As bytes, decoded where they lie: `Vec<u8>`'s own `Deserialize` would
        // take them one element at a time.
        d.deserialize_bytes(MessageVisitor(PhantomData))
    }

    struct MessageVisitor<M>(PhantomData<M>);

    impl<'de, M: Message + Default> Visitor<'de> for MessageVisitor<M> {
        type Value = M;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a protobuf-encoded message")
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<M, E> {
            M::decode(bytes).map_err(E::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use etcd_client::proto::{PbPutRequest, PbTxnOpRequest, PbTxnRequestOp};

    use super::*;
    use crate::raft::{decode, encode};

    #[test]
    fn a_txn_command_round_trips_through_the_log_encoding() {
        let put = PbPutRequest {
            key: b"/registry/pods/default/web".to_vec(),
            value: vec![7; 300],
            lease: 42,
            prev_kv: true,
            ..Default::default()
        };
        let cmd = Command::Txn(PbTxnRequest {
            success: vec![PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestPut(put)),
            }],
            ..Default::default()
        });
        let bytes = encode(&cmd);
        assert_eq!(decode::<Command>(&bytes).expect("decoding"), cmd);
        // A cut message is an error, not a panic or a shorter command.
        assert!(decode::<Command>(&bytes[..bytes.len() - 1]).is_err());
    }
}
