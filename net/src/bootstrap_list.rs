//! The bootstrap list: full multiaddrs ending in `/p2p/<peer id>`, from
//! `--bootstrap` flags or `bootstrap = [...]` in a node's config.

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::fmt;
use thiserror::Error;

/// One bootstrap peer: where to dial and who must answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapAddr {
    pub peer_id: PeerId,
    /// The full address, `/p2p/<peer id>` included.
    pub addr: Multiaddr,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BootstrapListError {
    #[error(
        "`{0}` is not a multiaddr; expected a form like /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW..."
    )]
    NotAMultiaddr(String),
    #[error(
        "`{0}` does not end in /p2p/<peer id>; the bootstrap peer prints its full address on start"
    )]
    NoPeerId(String),
}

impl BootstrapAddr {
    pub fn parse(s: &str) -> Result<Self, BootstrapListError> {
        let addr: Multiaddr = s
            .trim()
            .parse()
            .map_err(|_| BootstrapListError::NotAMultiaddr(s.to_string()))?;
        Self::from_multiaddr(addr)
    }

    pub fn from_multiaddr(addr: Multiaddr) -> Result<Self, BootstrapListError> {
        match addr.iter().last() {
            Some(Protocol::P2p(peer_id)) => Ok(BootstrapAddr { peer_id, addr }),
            _ => Err(BootstrapListError::NoPeerId(addr.to_string())),
        }
    }

    /// The address without its `/p2p/` suffix, for routing tables.
    pub fn transport_addr(&self) -> Multiaddr {
        let mut a = self.addr.clone();
        if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
            a.pop();
        }
        a
    }
}

impl fmt::Display for BootstrapAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.addr.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_address_parses_and_splits() {
        let peer = PeerId::random();
        let p =
            BootstrapAddr::parse(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")).expect("valid");
        assert_eq!(p.peer_id, peer);
        assert_eq!(p.transport_addr().to_string(), "/ip4/127.0.0.1/tcp/4001");
    }

    #[test]
    fn address_without_peer_id_is_refused_with_advice() {
        let err = BootstrapAddr::parse("/ip4/127.0.0.1/tcp/4001").expect_err("no peer id");
        assert!(err.to_string().contains("/p2p/"), "{err}");
        assert!(matches!(
            BootstrapAddr::parse("not an addr"),
            Err(BootstrapListError::NotAMultiaddr(_))
        ));
    }
}
