//! Every change to links, addresses and routes, over rtnetlink (never `ip`).
//! Entry points: [`Netlink::host`] for the node's namespace and
//! [`Netlink::in_netns`] for a pod sandbox.
//!
//! Entering a sandbox: a netlink socket belongs to the namespace of the
//! thread that created it, for its whole life. So [`Netlink::in_netns`] spawns
//! a short-lived thread that `setns`es into the sandbox and only opens the
//! socket there; the thread then exits and the calling thread never leaves
//! the node's namespace. No `unsafe` is needed (`nix::sched::setns` is safe).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use nix::sched::{setns, CloneFlags};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

const EEXIST: i32 = 17;
const ENODEV: i32 = 19;

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
    #[error("bridge: {name:?} already exists but is not a bridge")]
    NotABridge { name: String },
    #[error("interface {name:?} already exists in {place}")]
    InterfaceExists { name: String, place: &'static str },
    #[error("{step} {target}: {source}")]
    Request {
        step: &'static str,
        target: String,
        source: rtnetlink::Error,
    },
}

/// Name, index and MAC of one link, as the result JSON reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    pub mac: String,
    pub up: bool,
    pub kind: Option<String>,
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

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A netlink connection bound to one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the calling thread's namespace (the node's).
    /// Must be called inside a tokio runtime; the connection task is spawned on it.
    pub fn host() -> Result<Self, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// A connection whose socket lives in the namespace `ns` (see the module docs).
    pub fn in_netns(ns: &File, path: &Path) -> Result<Self, NetlinkError> {
        let runtime = tokio::runtime::Handle::current();
        let ns = ns.try_clone().map_err(NetlinkError::Connect)?;
        let path_buf = path.to_path_buf();
        let (conn, handle) = std::thread::scope(|s| {
            s.spawn(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetlinkError::EnterNetns {
                    path: path_buf,
                    source: e.into(),
                })?;
                let _enter = runtime.enter();
                let (conn, handle, _) =
                    rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
                Ok::<_, NetlinkError>((conn, handle))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetlinkError::Connect(std::io::Error::other(
                    "netns thread panicked",
                )))
            })
        })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The link called `name`, or `None`.
    pub async fn link(&self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(Some(msg)) => Ok(Some(to_link(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(source) => Err(NetlinkError::Request {
                step: "get link",
                target: name.into(),
                source,
            }),
        }
    }

    /// Finds or creates the bridge, and brings it up. Two plugins racing to
    /// create it both succeed: the loser sees EEXIST and reads the winner's.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        promisc: bool,
    ) -> Result<Link, NetlinkError> {
        let req = |step, source| NetlinkError::Request {
            step,
            target: name.into(),
            source,
        };
        let existing = match self.link(name).await? {
            Some(l) => l,
            None => {
                let mut b = LinkBridge::new(name);
                if let Some(m) = mtu {
                    b = b.mtu(m);
                }
                match self.handle.link().add(b.build()).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(EEXIST) => {}
                    Err(e) => return Err(req("create bridge", e)),
                }
                self.link(name)
                    .await?
                    .ok_or_else(|| req("create bridge", rtnetlink::Error::RequestFailed))?
            }
        };
        if existing.kind.as_deref() != Some("bridge") {
            return Err(NetlinkError::NotABridge { name: name.into() });
        }
        if !existing.up || promisc {
            let msg = LinkUnspec::new_with_index(existing.index)
                .up()
                .promiscuous(promisc)
                .build();
            self.handle
                .link()
                .set(msg)
                .execute()
                .await
                .map_err(|e| req("bring up bridge", e))?;
        }
        Ok(existing)
    }

    /// Adds `addr/prefix` to a link; already present is fine.
    pub async fn add_address(&self, index: u32, addr: Ipv4Net) -> Result<(), NetlinkError> {
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::Request {
                step: "add address",
                target: addr.to_string(),
                source,
            }),
        }
    }

    /// The IPv4 addresses on a link.
    pub async fn addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, NetlinkError> {
        let msgs: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|source| NetlinkError::Request {
                step: "list addresses",
                target: format!("ifindex {index}"),
                source,
            })?;
        Ok(msgs
            .into_iter()
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

    /// Creates the veth pair in one request: `host_name` on the node, enslaved
    /// to `bridge` and up; its peer created directly inside `sandbox` as
    /// `sandbox_name`, still down. Both ends get `mtu` when given.
    pub async fn create_veth(
        &self,
        host_name: &str,
        sandbox_name: &str,
        sandbox: &File,
        bridge: u32,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        // The peer cannot be created up: the kernel answers ENOTCONN when a
        // peer placed in another namespace carries IFF_UP. It is brought up
        // from inside the sandbox instead.
        let mut peer = LinkMessageBuilder::<LinkUnspec>::default()
            .name(sandbox_name.to_string())
            .setns_by_fd(sandbox.as_raw_fd());
        let mut host = LinkVeth::new(host_name, sandbox_name)
            .controller(bridge)
            .up();
        if let Some(m) = mtu {
            peer = peer.mtu(m);
            host = host.mtu(m);
        }
        let msg = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Err(NetlinkError::InterfaceExists {
                name: format!("{host_name} or {sandbox_name}"),
                place: "the node or the sandbox",
            }),
            Err(source) => Err(NetlinkError::Request {
                step: "create veth",
                target: host_name.into(),
                source,
            }),
        }
    }

    /// Sets a bridge port's hairpin mode (traffic may leave by the port it came in).
    pub async fn set_hairpin(&self, port: u32, on: bool) -> Result<(), NetlinkError> {
        let msg = LinkBridgePort::new(port).hairpin(on).build();
        self.handle
            .link()
            .set_port(msg)
            .execute()
            .await
            .map_err(|source| NetlinkError::Request {
                step: "set hairpin",
                target: format!("ifindex {port}"),
                source,
            })
    }

    /// Brings a link up by index.
    pub async fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.set_state(index, true).await
    }

    pub async fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        self.set_state(index, false).await
    }

    async fn set_state(&self, index: u32, up: bool) -> Result<(), NetlinkError> {
        let link = LinkUnspec::new_with_index(index);
        let msg = if up { link.up() } else { link.down() }.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|source| NetlinkError::Request {
                step: if up {
                    "bring up link"
                } else {
                    "bring down link"
                },
                target: format!("ifindex {index}"),
                source,
            })
    }

    /// Adds a route out of `index`; already present is fine.
    pub async fn add_route(
        &self,
        dst: Ipv4Net,
        gw: Ipv4Addr,
        index: u32,
    ) -> Result<(), NetlinkError> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(gw)
            .output_interface(index)
            .build();
        match self.handle.route().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
            Err(source) => Err(NetlinkError::Request {
                step: "add route",
                target: format!("{dst} via {gw}"),
                source,
            }),
        }
    }

    /// Deletes the link called `name`; returns whether it existed.
    pub async fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(source) => Err(NetlinkError::Request {
                step: "delete link",
                target: name.into(),
                source,
            }),
        }
    }
}

fn to_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        name: String::new(),
        index: msg.header.index,
        mac: String::new(),
        up: msg.header.flags.contains(LinkFlags::Up),
        kind: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
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
