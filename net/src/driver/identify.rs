//! What identify tells a driver about a peer: one that serves Kademlia goes
//! into our routing table at the addresses it listens on, and one that
//! speaks direct messages can be asked for the adverts it holds.

use super::adverts::AdvertHandoff;
use crate::wire;
use libp2p::{PeerId, identify, kad};

/// Takes what `peer_id` told identify. Returns whether it is now ready to
/// be asked for adverts (it subscribed before identify answered).
pub fn identified(
    kad: &mut kad::Behaviour<kad::store::MemoryStore>,
    handoff: &mut AdvertHandoff,
    peer_id: PeerId,
    info: &identify::Info,
) -> bool {
    if info.protocols.contains(&wire::KAD_PROTOCOL) {
        for addr in &info.listen_addrs {
            kad.add_address(&peer_id, addr.clone());
        }
    }
    handoff.identified(info.protocols.contains(&wire::MESSAGE_PROTOCOL))
}
