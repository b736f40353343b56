//! The seam between the commands that read a history (history, restore,
//! verify, prune) and the kinds of destination: a local folder opened as a
//! [`Store`], or an object store opened as a [`Remote`]. The commands take
//! a [`Destination`] and ask the history model, which reads the
//! increments through it; what a local destination does is unchanged.

use super::Store;
use super::object::Remote;

/// A job's destination, opened for reading.
#[derive(Debug)]
pub enum Destination {
    /// A folder (`destination: "/mnt/backup/home"`).
    Local(Store),
    /// An object store (`destination: "s3://BUCKET/PREFIX"`).
    Object(Remote),
}

impl Destination {
    /// The local store, if the destination is one.
    pub fn local(&self) -> Option<&Store> {
        match self {
            Destination::Local(store) => Some(store),
            Destination::Object(_) => None,
        }
    }
}
