//! The reference backend on the CPU.

use super::{Act, Backend, BackendError, DMat, Device, Region, Span, Update};
use crate::{matmul_naive, MatMut, MatRef};

/// The reference backend: every operation as a plain loop on the CPU (the products by the
/// naive twin), in one thread. Slow; it is what each backend's operations and each layer's
/// device program are tested against.
#[derive(Debug, Default, Clone)]
pub struct HostBackend {
    regions: [Vec<f32>; 6],
}

impl HostBackend {
    /// A backend with every region empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// The values of `span`.
    pub fn get(&self, span: Span) -> &[f32] {
        &self.regions[span.region.index()][span.offset..span.end()]
    }

    fn get_mut(&mut self, span: Span) -> &mut [f32] {
        &mut self.regions[span.region.index()][span.offset..span.end()]
    }

    fn check(&self, span: Span) -> Result<(), BackendError> {
        let len = self.regions[span.region.index()].len();
        if span.end() > len {
            return Err(BackendError::Unsupported(format!(
                "span {}..{} of {:?} reaches past its {len} values",
                span.offset,
                span.end(),
                span.region
            )));
        }
        Ok(())
    }

    fn mat(&self, m: DMat) -> Vec<f32> {
        // A copy of the matrix as used, row-major (the reference need not be fast).
        let s = self.get(m.span);
        let mut out = Vec::with_capacity(m.rows * m.cols);
        for i in 0..m.rows {
            for j in 0..m.cols {
                let (r, c) = if m.trans { (j, i) } else { (i, j) };
                out.push(s[r * m.ld + c]);
            }
        }
        out
    }
}

impl Backend for HostBackend {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn resize(&mut self, region: Region, len: usize) -> Result<(), BackendError> {
        self.regions[region.index()] = vec![0.0; len];
        Ok(())
    }

    fn len(&self, region: Region) -> usize {
        self.regions[region.index()].len()
    }

    fn write(&mut self, span: Span, values: &[f32]) -> Result<(), BackendError> {
        span.holds(values.len(), "written into")?;
        self.check(span)?;
        self.get_mut(span).copy_from_slice(values);
        Ok(())
    }

    fn read(&mut self, span: Span) -> Result<Vec<f32>, BackendError> {
        self.check(span)?;
        Ok(self.get(span).to_vec())
    }

    fn copy(&mut self, dst: Span, src: Span) -> Result<(), BackendError> {
        dst.holds(src.len, "copied into")?;
        self.check(dst)?;
        self.check(src)?;
        let v = self.get(src).to_vec();
        self.get_mut(dst).copy_from_slice(&v);
        Ok(())
    }

    fn fill(&mut self, span: Span, value: f32) -> Result<(), BackendError> {
        self.check(span)?;
        self.get_mut(span).fill(value);
        Ok(())
    }

    fn gemm(
        &mut self,
        c: DMat,
        a: DMat,
        b: DMat,
        alpha: f32,
        beta: f32,
    ) -> Result<(), BackendError> {
        for s in [a.span, b.span, c.span] {
            self.check(s)?;
        }
        if c.trans || a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
            return Err(BackendError::Unsupported(format!(
                "gemm of {}x{} by {}x{} into {}x{}{}",
                a.rows,
                a.cols,
                b.rows,
                b.cols,
                c.rows,
                c.cols,
                if c.trans { " (transposed)" } else { "" }
            )));
        }
        let (av, bv) = (self.mat(a), self.mat(b));
        let a = MatRef::new(&av, a.rows, a.cols).expect("copied to size");
        let b = MatRef::new(&bv, b.rows, b.cols).expect("copied to size");
        let dst = self.get_mut(c.span);
        let dst = MatMut::strided(dst, c.rows, c.cols, c.ld, 1)
            .map_err(|e| BackendError::Unsupported(e.to_string()))?;
        matmul_naive(dst, a, b, alpha, beta);
        Ok(())
    }

    fn bias_act(
        &mut self,
        y: Span,
        bias: Option<Span>,
        cols: usize,
        act: Act,
    ) -> Result<(), BackendError> {
        self.check(y)?;
        let b = match bias {
            Some(b) => {
                self.check(b)?;
                self.get(b).to_vec()
            }
            None => vec![0.0; cols],
        };
        for row in self.get_mut(y).chunks_exact_mut(cols) {
            for (v, b) in row.iter_mut().zip(&b) {
                *v = act.apply(*v + b);
            }
        }
        Ok(())
    }

    fn act_grad(&mut self, dy: Span, y: Span, act: Act) -> Result<(), BackendError> {
        self.check(dy)?;
        self.check(y)?;
        let y = self.get(y).to_vec();
        for (d, y) in self.get_mut(dy).iter_mut().zip(&y) {
            *d *= act.derivative(*y);
        }
        Ok(())
    }

    fn col_sum(&mut self, out: Span, x: Span, cols: usize, beta: f32) -> Result<(), BackendError> {
        self.check(out)?;
        self.check(x)?;
        let x = self.get(x).to_vec();
        let out = self.get_mut(out);
        for (j, o) in out.iter_mut().enumerate().take(cols) {
            let s: f32 = x.chunks_exact(cols).map(|row| row[j]).sum();
            *o = if beta == 0.0 { s } else { beta * *o + s };
        }
        Ok(())
    }

    fn softmax_xent(
        &mut self,
        logits: Span,
        labels: Span,
        dlogits: Span,
        classes: usize,
        scale: f32,
        stats: Span,
    ) -> Result<(), BackendError> {
        for s in [logits, labels, dlogits, stats] {
            self.check(s)?;
        }
        let z = self.get(logits).to_vec();
        let labels = self.get(labels).to_vec();
        let mut d = vec![0.0; z.len()];
        let (mut loss, mut correct) = (0.0f64, 0.0f32);
        for ((row, drow), &label) in z
            .chunks_exact(classes)
            .zip(d.chunks_exact_mut(classes))
            .zip(&labels)
        {
            let label = label as usize;
            let (mut best, mut max) = (0, row[0]);
            for (j, &v) in row.iter().enumerate() {
                if v > max {
                    (best, max) = (j, v);
                }
            }
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            loss += ((max + sum.ln()) - row[label]) as f64;
            correct += f32::from(best == label);
            for (j, (dv, v)) in drow.iter_mut().zip(row).enumerate() {
                let p = (v - max).exp() / sum;
                *dv = (p - f32::from(j == label)) * scale;
            }
        }
        self.get_mut(dlogits).copy_from_slice(&d);
        let st = self.get_mut(stats);
        st[0] += loss as f32;
        st[1] += correct;
        Ok(())
    }

    fn update(
        &mut self,
        rule: &Update,
        params: Span,
        grads: Span,
        state: Span,
        stride: usize,
        hyper: Span,
    ) -> Result<(), BackendError> {
        let (n, k) = (params.len, rule.state_buffers());
        let blocks: Vec<Span> = (0..k)
            .map(|b| Span::new(state.region, state.offset + b * stride, n))
            .collect();
        for &s in [params, grads, hyper].iter().chain(&blocks) {
            self.check(s)?;
        }
        let h: [f32; Update::HYPER] = self
            .get(hyper.sub(0, Update::HYPER))
            .try_into()
            .expect("sized");
        let g = self.get(grads).to_vec();
        let mut st: Vec<Vec<f32>> = blocks.iter().map(|&b| self.get(b).to_vec()).collect();
        let p = self.get_mut(params);
        let mut one = [0.0f32; 3];
        for i in 0..n {
            for b in 0..k {
                one[b] = st[b][i];
            }
            rule.apply(&mut p[i], g[i], &mut one[..k], &h);
            for b in 0..k {
                st[b][i] = one[b];
            }
        }
        for (b, v) in blocks.iter().zip(&st) {
            self.get_mut(*b).copy_from_slice(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{DMat, Region, Span};

    /// Spans of the wrong length or past their region's end are errors, not panics.
    #[test]
    fn host_refuses_spans_that_do_not_fit() {
        let mut h = HostBackend::new();
        h.resize(Region::Acts, 8).unwrap();
        let e = h
            .write(Span::new(Region::Acts, 0, 4), &[1.0; 3])
            .unwrap_err();
        assert!(
            e.to_string().contains("3 values written into a span of 4"),
            "{e}"
        );
        let e = h.read(Span::new(Region::Acts, 6, 4)).unwrap_err();
        assert!(e.to_string().contains("reaches past its 8 values"), "{e}");
        let (a, b) = (Span::new(Region::Acts, 0, 2), Span::new(Region::Acts, 4, 3));
        assert!(h.copy(a, b).is_err());
    }

    /// The reference gemm on transposed, strided operands against the naive product.
    #[test]
    fn host_gemm_reads_transposes_and_strides() {
        let mut h = HostBackend::new();
        h.resize(Region::Acts, 64).unwrap();
        let a: Vec<f32> = (0..6).map(|v| v as f32).collect(); // stored 3x2, used as 2x3 (t)
        let b: Vec<f32> = (0..12).map(|v| (v as f32) * 0.5).collect(); // 3x4
        h.write(Span::new(Region::Acts, 0, 6), &a).unwrap();
        h.write(Span::new(Region::Acts, 8, 12), &b).unwrap();
        h.fill(Span::new(Region::Acts, 20, 16), 1.0).unwrap();
        // C (2x4, row stride 8, in a 2x8 block) = 2·Aᵀ·B + 1·C
        let am = DMat::new(Span::new(Region::Acts, 0, 6), 3, 2).t();
        let bm = DMat::new(Span::new(Region::Acts, 8, 12), 3, 4);
        let cm = DMat {
            ld: 8,
            ..DMat::new(Span::new(Region::Acts, 20, 16), 2, 4)
        };
        h.gemm(cm, am, bm, 2.0, 1.0).unwrap();
        let c = h.read(Span::new(Region::Acts, 20, 16)).unwrap();
        for i in 0..2 {
            for j in 0..4 {
                let want: f32 = (0..3).map(|p| a[p * 2 + i] * b[p * 4 + j]).sum::<f32>() * 2.0;
                assert_eq!(c[i * 8 + j], want + 1.0, "({i}, {j})");
            }
            assert!(c[i * 8 + 4..i * 8 + 8].iter().all(|&v| v == 1.0), "the gap");
        }
    }

    /// Softmax cross-entropy's loss, gradient and count against the formulas, with a tie.
    #[test]
    fn host_xent_matches_the_formula() {
        let mut h = HostBackend::new();
        h.resize(Region::Acts, 12).unwrap();
        h.resize(Region::Batch, 2).unwrap();
        h.resize(Region::Hyper, 2).unwrap();
        let z = [1.0, 2.0, 2.0, -1.0, 0.5, 0.0];
        h.write(Span::new(Region::Acts, 0, 6), &z).unwrap();
        h.write(Span::new(Region::Batch, 0, 2), &[2.0, 0.0])
            .unwrap();
        let stats = Span::new(Region::Hyper, 0, 2);
        let (zs, ds) = (Span::new(Region::Acts, 0, 6), Span::new(Region::Acts, 6, 6));
        h.softmax_xent(zs, Span::new(Region::Batch, 0, 2), ds, 3, 0.5, stats)
            .unwrap();
        let d = h.read(ds).unwrap();
        let st = h.read(stats).unwrap();
        let mut want_loss = 0.0;
        for (r, label) in [(0, 2), (1, 0)] {
            let row = &z[r * 3..r * 3 + 3];
            let s: f32 = row.iter().map(|v| v.exp()).sum();
            want_loss += s.ln() - row[label];
            for j in 0..3 {
                let want = (row[j].exp() / s - f32::from(j == label)) * 0.5;
                assert!((d[r * 3 + j] - want).abs() < 1e-6);
            }
        }
        assert!((st[0] - want_loss).abs() < 1e-5);
        // Row 0's tie between classes 1 and 2 goes to the first (1): wrong; row 1 is wrong.
        assert_eq!(st[1], 0.0);
    }

    /// An update over a range reads each buffer block of the state at the right place: SGD
    /// with momentum and Adam (AMSGrad), element by element against `Update::apply`.
    #[test]
    fn host_update_walks_the_state_blocks() {
        let rules = [
            Update::Sgd {
                momentum: 0.9,
                dampening: 0.1,
                weight_decay: 0.01,
                nesterov: false,
                maximize: false,
            },
            Update::Adam {
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: 0.1,
                decoupled: true,
                amsgrad: true,
                maximize: false,
            },
        ];
        for rule in rules {
            let n = 5;
            let k = rule.state_buffers();
            let mut h = HostBackend::new();
            h.resize(Region::Params, n + 2).unwrap();
            h.resize(Region::Grads, n + 2).unwrap();
            h.resize(Region::State, k * (n + 3)).unwrap();
            h.resize(Region::Hyper, Update::HYPER).unwrap();
            let p0: Vec<f32> = (0..n).map(|i| i as f32 * 0.3 - 0.5).collect();
            let g: Vec<f32> = (0..n).map(|i| 0.2 - i as f32 * 0.1).collect();
            let (ps, gs) = (
                Span::new(Region::Params, 2, n),
                Span::new(Region::Grads, 1, n),
            );
            h.write(ps, &p0).unwrap();
            h.write(gs, &g).unwrap();
            let (mut p, mut st) = (p0.clone(), vec![vec![0.0f32; k]; n]);
            for t in 1..=3 {
                let hy = rule.hyper(0.1, t);
                h.write(Span::new(Region::Hyper, 0, Update::HYPER), &hy)
                    .unwrap();
                // Blocks of n + 3 values, this range 1 value in.
                let state = Span::new(Region::State, 1, n);
                let hy_span = Span::new(Region::Hyper, 0, Update::HYPER);
                h.update(&rule, ps, gs, state, n + 3, hy_span).unwrap();
                for i in 0..n {
                    rule.apply(&mut p[i], g[i], &mut st[i], &hy);
                }
            }
            assert_eq!(h.read(ps).unwrap(), p, "{rule:?}");
            let state = h.read(Span::new(Region::State, 0, k * (n + 3))).unwrap();
            for (i, want) in st.iter().enumerate() {
                for (b, want) in want.iter().enumerate() {
                    let at = b * (n + 3) + 1 + i;
                    assert_eq!(state[at], *want, "{rule:?} buffer {b} at {i}");
                }
            }
            assert_ne!(p, p0);
        }
    }
}
