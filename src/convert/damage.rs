//! What a conversion skipped of a damaged bag, reported without flooding the terminal.

use serde::Serialize;

/// Most damage warnings kept in a report (all are counted).
const MAX_DAMAGE_WARNINGS: usize = 20;

/// Data skipped because it was damaged (see `strict` in the config to make it fatal instead).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DamageReport {
    pub chunks_skipped: u64,
    /// Chunks whose walk stopped at a malformed record (the records before it were used).
    pub chunks_cut: u64,
    messages_skipped: u64,
    /// Chunks whose index data disagrees with them (nothing lost: their messages are read
    /// from the chunks themselves); warned about once per bag.
    index_mismatches: u64,
    /// Messages of all topics in the skipped chunks, from the index.
    messages_in_skipped_chunks: u64,
    /// The first [`MAX_DAMAGE_WARNINGS`] warnings, naming file, offset, topic and time.
    pub warnings: Vec<String>,
}

impl DamageReport {
    pub(super) fn note(&mut self, msg: String) {
        crate::diag::warn(&msg);
        if self.warnings.len() < MAX_DAMAGE_WARNINGS {
            self.warnings.push(msg);
        }
    }

    pub(super) fn skip_chunk(&mut self, messages: u64, msg: String) {
        self.chunks_skipped += 1;
        self.messages_in_skipped_chunks += messages;
        self.note(format!("{msg} ({messages} messages lost)"));
    }

    pub(super) fn skip_rest(&mut self, msg: String) {
        self.chunks_cut += 1;
        self.note(msg);
    }

    pub(super) fn skip_message(&mut self, msg: String) {
        self.messages_skipped += 1;
        self.note(msg);
    }

    pub(super) fn index_mismatch(&mut self, e: &crate::error::Error) {
        self.index_mismatches += 1;
        if self.index_mismatches == 1 {
            self.note(format!(
                "{e}; messages are read from the chunks themselves, by scanning them (further \
                 disagreements of this bag's index are counted, not warned about)"
            ));
        }
    }
}
