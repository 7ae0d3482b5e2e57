//! Strided matrix views over f32 buffers.

use std::marker::PhantomData;

use crate::TensorError;

fn reach(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

fn check(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<(), TensorError> {
    let needed = reach(rows, cols, rs, cs);
    if needed > len {
        return Err(TensorError::BufferTooSmall {
            rows,
            cols,
            row_stride: rs,
            col_stride: cs,
            needed,
            len,
        });
    }
    Ok(())
}

/// A read-only view of a `rows x cols` matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` view of the first `rows * cols` elements of `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<Self, TensorError> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit row and column strides.
    pub fn strided(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, TensorError> {
        check(data.len(), rows, cols, row_stride, col_stride)?;
        Ok(Self {
            data,
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
        })
    }

    /// The transpose, as a view: strides swap, no data moves.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element `(i, j)`; panics when out of range, like slice indexing.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of a {}x{} view",
            self.rows,
            self.cols
        );
        self.data[i * self.rs + j * self.cs]
    }

    /// Rows `start..start + len` as a view.
    pub fn rows_range(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.rows,
            "rows {start}..{} of {}",
            start + len,
            self.rows
        );
        let off = if len == 0 { 0 } else { start * self.rs };
        Self {
            data: &self.data[off.min(self.data.len())..],
            rows: len,
            ..self
        }
    }

    /// Columns `start..start + len` as a view.
    pub fn cols_range(self, start: usize, len: usize) -> Self {
        self.t().rows_range(start, len).t()
    }

    pub(crate) fn ptr(&self) -> *const f32 {
        self.data.as_ptr()
    }

    pub(crate) fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }
}

/// A writable view of a `rows x cols` matrix. Views made by [`MatMut::split_rows`] and
/// [`MatMut::split_cols`] cover disjoint elements, so they can be handed to different threads.
#[derive(Debug)]
pub struct MatMut<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: a MatMut is an exclusive borrow of the elements it reaches, like `&mut [f32]`.
unsafe impl Send for MatMut<'_> {}

impl<'a> MatMut<'a> {
    /// A row-major `rows x cols` view of the first `rows * cols` elements of `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Result<Self, TensorError> {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit strides. Strides must not make two elements alias; row-major
    /// (`row_stride >= cols`, `col_stride == 1`) and its transpose are the usual choices.
    pub fn strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self, TensorError> {
        check(data.len(), rows, cols, row_stride, col_stride)?;
        Ok(Self {
            ptr: data.as_mut_ptr(),
            rows,
            cols,
            rs: row_stride,
            cs: col_stride,
            _borrow: PhantomData,
        })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Splits into rows `..mid` and rows `mid..`.
    pub fn split_rows(self, mid: usize) -> (Self, Self) {
        assert!(mid <= self.rows, "split at row {mid} of {}", self.rows);
        // SAFETY: when the bottom part is non-empty, `mid * rs` is inside the borrowed range.
        let bottom = if mid < self.rows && self.cols > 0 {
            unsafe { self.ptr.add(mid * self.rs) }
        } else {
            self.ptr
        };
        (
            Self { rows: mid, ..self },
            Self {
                ptr: bottom,
                rows: self.rows - mid,
                ..self
            },
        )
    }

    /// Splits into columns `..mid` and columns `mid..`.
    pub fn split_cols(self, mid: usize) -> (Self, Self) {
        let (a, b) = self.t().split_rows(mid);
        (a.t(), b.t())
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of a {}x{} view",
            self.rows,
            self.cols
        );
        // SAFETY: in range, checked above and at construction.
        unsafe { *self.ptr.add(i * self.rs + j * self.cs) }
    }

    /// Sets element `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, v: f32) {
        assert!(
            i < self.rows && j < self.cols,
            "index ({i}, {j}) out of a {}x{} view",
            self.rows,
            self.cols
        );
        // SAFETY: in range, checked above and at construction; the view is exclusive.
        unsafe { *self.ptr.add(i * self.rs + j * self.cs) = v }
    }

    /// Row `i` as a slice; the view's columns must be contiguous (column stride 1).
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "row {i} of {}", self.rows);
        assert!(
            self.cs == 1 || self.cols <= 1,
            "row_mut needs contiguous columns"
        );
        // SAFETY: the row's `cols` contiguous elements are inside the exclusive view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.rs), self.cols) }
    }

    /// A shorter-lived view of the same elements.
    pub fn rb_mut(&mut self) -> MatMut<'_> {
        MatMut {
            _borrow: PhantomData,
            ..*self
        }
    }

    pub(crate) fn ptr(&self) -> *mut f32 {
        self.ptr
    }

    pub(crate) fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }
}

/// `dst = srcᵀ`: `dst` is `src.cols() x src.rows()`. Row-major views on both sides take 16 x 16
/// register transposes with AVX-512; anything else is copied element by element.
pub fn transpose(mut dst: MatMut<'_>, src: MatRef<'_>) {
    assert!(
        dst.rows() == src.cols() && dst.cols() == src.rows(),
        "transpose: dst {}x{} is not the shape of the transpose of {}x{}",
        dst.rows(),
        dst.cols(),
        src.rows(),
        src.cols()
    );
    let ((srs, scs), (drs, dcs)) = (src.strides(), dst.strides());
    // SAFETY: the views were checked at construction to stay inside their buffers, and `dst`
    // is an exclusive borrow that `src` cannot alias.
    if scs == 1
        && dcs == 1
        && unsafe {
            crate::kernels::transpose(src.ptr(), srs, src.rows(), src.cols(), dst.ptr(), drs)
        }
    {
        return;
    }
    for i in 0..src.rows() {
        for j in 0..src.cols() {
            dst.set(j, i, src.at(i, j));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transpose of row-major blocks and of strided views, on shapes around the 16 x 16
    /// register blocks, equals the element-wise definition.
    #[test]
    fn transpose_matches_definition() {
        for &(rows, cols) in &[(1, 1), (3, 17), (16, 16), (33, 40), (17, 1), (5, 64)] {
            for pad in [0, 3] {
                let ld = cols + pad;
                let src: Vec<f32> = (0..rows * ld).map(|v| v as f32).collect();
                let a = MatRef::strided(&src, rows, cols, ld, 1).unwrap();
                let dld = rows + pad;
                let mut dst = vec![-1.0f32; cols * dld];
                transpose(MatMut::strided(&mut dst, cols, rows, dld, 1).unwrap(), a);
                for j in 0..cols {
                    for i in 0..rows {
                        assert_eq!(dst[j * dld + i], src[i * ld + j], "{rows}x{cols} pad {pad}");
                    }
                    // Past the view's columns, nothing was written.
                    assert!(dst[j * dld + rows..(j + 1) * dld]
                        .iter()
                        .all(|&v| v == -1.0));
                }
            }
        }
        // A column-major source takes the element-wise path.
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut dst = [0.0f32; 12];
        transpose(
            MatMut::new(&mut dst, 3, 4).unwrap(),
            MatRef::new(&src, 3, 4).unwrap().t(),
        );
        assert_eq!(dst, src.as_slice());
    }
}
