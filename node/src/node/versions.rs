//! Which wire protocol versions the peers speak, read from their identify
//! agent strings (`wire::agent_protocol`), and the warning a node logs when
//! most of them speak a newer version than its own. Envelopes of another
//! version are refused (protocol.md §3.2), so without this a node left
//! behind would only see its peers fall silent.

use libp2p::PeerId;
use modchain_net::PeerInfo;
use modchain_net::wire::agent_protocol;
use modchain_protocol::PROTOCOL_VERSION;
use std::collections::{BTreeMap, HashMap};

/// The label a peer whose agent names no protocol version is counted under.
pub const UNKNOWN: &str = "unknown";

/// Connected, identified peers by the protocol version their agent names
/// (`"3"`, or [`UNKNOWN`]).
pub fn peers_by_protocol(peers: &HashMap<PeerId, PeerInfo>) -> BTreeMap<String, u64> {
    let mut tally = BTreeMap::new();
    for info in peers.values().filter(|p| p.connections > 0) {
        let Some(agent) = &info.agent else { continue };
        let key = agent_protocol(agent).map_or_else(|| UNKNOWN.to_string(), |v| v.to_string());
        *tally.entry(key).or_default() += 1;
    }
    tally
}

/// Most identified peers speak a newer protocol version than this node.
#[derive(Debug, PartialEq, Eq)]
pub struct LeftBehind {
    /// The newest version among them.
    pub newest: u16,
    /// Peers on a newer version than ours.
    pub newer: u64,
    /// Peers whose version is known.
    pub of: u64,
}

/// Remembers what it already warned about, so each newer version is
/// logged once and not on every identify.
#[derive(Debug, Default)]
pub struct ProtocolWatch {
    warned: Option<u16>,
}

impl ProtocolWatch {
    /// Looks at the tally; returns what to warn about when more than half
    /// of the peers with a known version speak a newer one than ours, and
    /// that newest version was not warned about yet.
    pub fn check(&mut self, tally: &BTreeMap<String, u64>) -> Option<LeftBehind> {
        let known: Vec<(u16, u64)> = tally
            .iter()
            .filter_map(|(v, n)| v.parse::<u16>().ok().map(|v| (v, *n)))
            .collect();
        let of: u64 = known.iter().map(|(_, n)| n).sum();
        let newer: u64 = known
            .iter()
            .filter(|(v, _)| *v > PROTOCOL_VERSION)
            .map(|(_, n)| n)
            .sum();
        let newest = known.iter().map(|(v, _)| *v).max()?;
        if newer * 2 <= of || self.warned >= Some(newest) {
            return None;
        }
        self.warned = Some(newest);
        Some(LeftBehind { newest, newer, of })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    #[test]
    fn warns_once_when_most_peers_are_newer() {
        let ours = PROTOCOL_VERSION.to_string();
        let next = (PROTOCOL_VERSION + 1).to_string();
        let mut watch = ProtocolWatch::default();
        // Half is not most.
        assert_eq!(watch.check(&tally(&[(&ours, 2), (&next, 2)])), None);
        // Peers that say nothing of their version do not count either way.
        assert_eq!(
            watch.check(&tally(&[(&ours, 1), (&next, 2), (UNKNOWN, 9)])),
            Some(LeftBehind {
                newest: PROTOCOL_VERSION + 1,
                newer: 2,
                of: 3
            })
        );
        // Once per version.
        assert_eq!(watch.check(&tally(&[(&next, 5)])), None);
        let later = (PROTOCOL_VERSION + 2).to_string();
        assert!(watch.check(&tally(&[(&later, 5)])).is_some());
    }

    #[test]
    fn older_peers_are_no_reason_to_warn() {
        let older = PROTOCOL_VERSION.saturating_sub(1).to_string();
        assert_eq!(ProtocolWatch::default().check(&tally(&[(&older, 7)])), None);
        assert_eq!(ProtocolWatch::default().check(&BTreeMap::new()), None);
    }
}
