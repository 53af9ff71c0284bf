//! The detector's context counts, in a fixed-size table (`Detector` sizes it per scale).

/// Context counts: a fixed table of 20-bit fingerprints and 12-bit counts. When a probe
/// window is full, the least-seen entry makes room; when a count saturates, every count
/// is halved, so old habits fade.
pub(super) struct ContextTable {
    slots: Box<[u32]>,
}

const PROBE: usize = 4;
const COUNT_BITS: u32 = 12;
const COUNT_MAX: u32 = (1 << COUNT_BITS) - 1;

impl ContextTable {
    pub(super) fn new(size: usize) -> Self {
        ContextTable {
            slots: vec![0; size].into_boxed_slice(),
        }
    }

    fn locate(&self, hash: u64) -> (usize, u32) {
        let fingerprint = ((hash >> 40) as u32 & 0xF_FFFF).max(1);
        ((hash as usize) % self.slots.len(), fingerprint)
    }

    pub(super) fn get(&self, hash: u64) -> u32 {
        let (start, fingerprint) = self.locate(hash);
        let size = self.slots.len();
        (0..PROBE)
            .map(|j| self.slots[(start + j) % size])
            .find(|e| e >> COUNT_BITS == fingerprint)
            .map_or(0, |e| e & COUNT_MAX)
    }

    pub(super) fn bump(&mut self, hash: u64) {
        let (start, fingerprint) = self.locate(hash);
        let size = self.slots.len();
        let mut victim = start;
        let mut victim_count = u32::MAX;
        for j in 0..PROBE {
            let slot = (start + j) % size;
            let entry = self.slots[slot];
            if entry >> COUNT_BITS == fingerprint {
                if entry & COUNT_MAX == COUNT_MAX {
                    self.halve();
                }
                self.slots[slot] += 1;
                return;
            }
            let count = entry & COUNT_MAX;
            if count < victim_count {
                victim = slot;
                victim_count = count;
            }
        }
        self.slots[victim] = (fingerprint << COUNT_BITS) | 1;
    }

    pub(super) fn halve(&mut self) {
        for entry in self.slots.iter_mut() {
            let count = (*entry & COUNT_MAX) / 2;
            *entry = if count == 0 {
                0
            } else {
                (*entry & !COUNT_MAX) | count
            };
        }
    }

    pub(super) fn clear(&mut self) {
        self.slots.fill(0);
    }
}
