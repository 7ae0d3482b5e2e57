//! Disjoint pieces of one buffer for the parts of a pool job.

/// A buffer shared by the parts of one job, each part using a disjoint range of it.
#[derive(Clone, Copy)]
pub(crate) struct Scratch(*mut f32, usize);

// SAFETY: parts only ever touch disjoint ranges (see `part`), as `split_at_mut` would give.
unsafe impl Send for Scratch {}
unsafe impl Sync for Scratch {}

impl Scratch {
    pub(crate) fn new(s: &mut [f32]) -> Self {
        Self(s.as_mut_ptr(), s.len())
    }

    /// Range `off..off + len`.
    ///
    /// # Safety
    /// No two live slices from the same `Scratch` may overlap, and the buffer it was made
    /// from must outlive them and not be used otherwise meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn part<'b>(&self, off: usize, len: usize) -> &'b mut [f32] {
        assert!(off + len <= self.1, "scratch range out of bounds");
        // SAFETY: in bounds (checked); disjointness is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(off), len) }
    }
}

/// Items `start..end` of part `p` when `total` items are cut into `parts` runs.
pub(crate) fn images(total: usize, parts: usize, p: usize) -> (usize, usize) {
    let per = total.div_ceil(parts.max(1));
    ((p * per).min(total), ((p + 1) * per).min(total))
}
