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
        BagIndex::open_reading(bag, BagIndex::read)
    }

    /// [`BagIndex::open`] with `read` as the way to read an index from the bag.
    fn open_reading(
        bag: &BagFile,
        read: fn(&BagFile) -> Result<BagIndex>,
    ) -> Result<(BagIndex, Option<RecoveryNote>)> {
        let header = bag.header();
        let err = match read(bag) {
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
    /// [`BagIndex::open`], then every index-data record checked against the chunk infos (what
    /// a reader of every message time, like `dump`, reads anyway). When they disagree, the
    /// index cannot be trusted to find every message, so the bag is read by a recovery scan
    /// instead, and the note says why: messages are never silently lost.
    pub fn open_verified(bag: &BagFile) -> Result<(BagIndex, Option<RecoveryNote>)> {
        BagIndex::open_checking(bag, BagIndex::read, |index| {
            let all: Vec<u32> = index.connections.iter().map(|c| c.id).collect();
            index.visit_index_data(bag, &all, |_, _, _, _| {})
        })
    }

    /// The index section alone (no chunk header is read up front: see
    /// [`super::index::ChunkInfo::headed`]), then the header and index data of the first and
    /// the last chunk (in file order) checked against their chunk infos: a few small reads, not
    /// a pass over the file. The two headers stay in the index (the edges are what the plan
    /// reads again: the timeline's ends, the shape probe, the bag's compression).
    /// Index data that a writer left out or a tool spoilt throughout show there, and the bag
    /// is read by a recovery scan instead; damage further in is found by readers that take
    /// each chunk's index data as they read the chunk (`input::Recording`), which read the
    /// messages from the chunk itself either way.
    pub(crate) fn open_checked(bag: &BagFile) -> Result<(BagIndex, Option<RecoveryNote>)> {
        BagIndex::open_checking(bag, BagIndex::read_section, |index| {
            let mut order: Vec<usize> = (0..index.chunks.len()).collect();
            order.sort_by_key(|&i| index.chunks[i].pos);
            let edges = [order.first(), order.last()];
            let mut checked = Vec::new();
            for &ci in edges.into_iter().flatten() {
                if !checked.contains(&ci) {
                    index.chunks[ci] = index.headed(bag, ci)?.into_owned();
                    index.keep_index_data(bag, ci)?;
                    checked.push(ci);
                }
            }
            Ok(())
        })
    }

    /// [`BagIndex::open`] by `read`, then `check` on an index read from the bag; an
    /// [`Error::IndexMismatch`] from it, or a malformed chunk header it read, turns into a
    /// recovery scan with a note.
    fn open_checking(
        bag: &BagFile,
        read: fn(&BagFile) -> Result<BagIndex>,
        check: impl FnOnce(&mut BagIndex) -> Result<()>,
    ) -> Result<(BagIndex, Option<RecoveryNote>)> {
        let (mut index, note) = BagIndex::open_reading(bag, read)?;
        if note.is_some() {
            return Ok((index, note));
        }
        match check(&mut index) {
            Ok(()) => Ok((index, None)),
            Err(
                Error::IndexMismatch { offset, what, .. } | Error::Malformed { offset, what, .. },
            ) => {
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
