//! Opening a bag's index, the one way every command does it: read the index section (see
//! [`super::index`]), or, when the bag has no usable index, rebuild it by a recovery scan
//! ([`super::recover`]) and say so in a [`RecoveryNote`].

use super::file::BagFile;
use super::index::BagIndex;
use super::recover::{RecoveryNote, RecoveryReason, recover};
use crate::error::{Error, Result};

impl BagIndex {
    /// The one way commands open a bag's index: read it, or, when the bag has no usable index,
    /// rebuild it by a recovery scan and say so in the returned note.
    ///
    /// A scan that finds nothing does not replace an index section that is in the file but does
    /// not parse (e.g. a 90-byte file claiming 600 chunks): the index error is returned. An
    /// unclosed recording (`index_pos` 0) or a copy cut before its first complete record is an
    /// empty bag, with a note.
    pub fn open(bag: &BagFile) -> Result<(BagIndex, Option<RecoveryNote>)> {
        let header = bag.header();
        let err = match BagIndex::read(bag) {
            Ok(index) => return Ok((index, None)),
            Err(e) => e,
        };
        let reason = if header.index_pos == 0 {
            RecoveryReason::NotClosed
        } else if header.index_pos > bag.len() {
            RecoveryReason::IndexPastEnd {
                index_pos: header.index_pos,
                file_len: bag.len(),
            }
        } else {
            RecoveryReason::Damaged(match &err {
                Error::Malformed { offset, what, .. } => format!("at offset {offset}: {what}"),
                other => other.to_string(),
            })
        };
        let (index, note) = recover(bag, reason)?;
        let index_in_file = header.index_pos != 0 && header.index_pos <= bag.len();
        if index_in_file && index.chunks.is_empty() && index.connections.is_empty() {
            return Err(err);
        }
        Ok((index, Some(note)))
    }
}

impl BagIndex {
    /// [`BagIndex::open`], then every index-data record checked against the chunk infos (the
    /// same reads a reader of the message times makes anyway, done once up front). When they
    /// disagree, the index cannot be trusted to find every message, so the bag is read by a
    /// recovery scan instead, and the note says why: messages are never silently lost.
    pub fn open_verified(bag: &BagFile) -> Result<(BagIndex, Option<RecoveryNote>)> {
        let (index, note) = BagIndex::open(bag)?;
        if note.is_some() {
            return Ok((index, note));
        }
        let all: Vec<u32> = index.connections.iter().map(|c| c.id).collect();
        match index.visit_index_data(bag, &all, |_, _, _, _| {}) {
            Ok(()) => Ok((index, None)),
            Err(Error::IndexMismatch { offset, what, .. }) => {
                let (index, note) = recover(
                    bag,
                    RecoveryReason::Damaged(format!("at offset {offset}: {what}")),
                )?;
                Ok((index, Some(note)))
            }
            Err(e) => Err(e),
        }
    }
}

