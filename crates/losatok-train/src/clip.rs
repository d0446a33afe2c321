//! Global-norm gradient clipping (`torch.nn.utils.clip_grad_norm_`): one norm over all gradients
//! of a module, and one common scale. (Burn's own `GradientClippingConfig::Norm` clips each
//! tensor separately.)

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// `‖g‖₂²` over every gradient of `module` present in `grads`, left on the device (`[1]`, zero
/// when there is none), so a step can read it together with its losses in one transfer.
pub fn grad_sq_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
    device: &B::Device,
) -> Tensor<B::InnerBackend, 1> {
    struct SumSq<'a, B: AutodiffBackend> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<B::InnerBackend, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for SumSq<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(p.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
    }
    let mut sum = SumSq::<B> { grads, acc: None };
    module.visit(&mut sum);
    sum.acc.unwrap_or_else(|| Tensor::zeros([1], device))
}

/// Several `[1]` device values (losses, squared norms) read to the host in one transfer, i.e.
/// one device sync however many values a step reports.
pub fn read_scalars<B: Backend>(values: Vec<Tensor<B, 1>>) -> Vec<f64> {
    Tensor::cat(values, 0)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("float values")
}

/// `‖g‖₂` over every gradient of `module` present in `grads`, as a host value (one sync).
pub fn grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
    device: &B::Device,
) -> f64 {
    grad_sq_norm(module, grads, device)
        .into_scalar()
        .elem::<f64>()
        .sqrt()
}

/// Multiply every gradient of `module` in `grads` by `factor`.
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(p.id) {
                self.grads
                    .register::<B::InnerBackend, D>(p.id, g.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scale { grads, factor });
}

/// Clip the global norm of `module`'s gradients to `max_norm`, given that norm (computed with
/// [`grad_sq_norm`] and read together with other values): if `‖g‖ > max_norm`, scale all
/// gradients by `max_norm / (‖g‖ + 1e-6)`. A non-finite norm changes nothing (the caller
/// decides what to do then).
pub fn clip_to<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    norm: f64,
    max_norm: f64,
) {
    if norm.is_finite() && norm > max_norm {
        scale_grads(module, grads, max_norm / (norm + 1e-6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type Ad = Autodiff<Flex>;

    #[test]
    fn clips_the_global_norm_to_the_limit() {
        let dev = Default::default();
        let m: Linear<Ad> = LinearConfig::new(8, 8).init(&dev);
        let x = Tensor::<Ad, 2>::ones([4, 8], &dev).mul_scalar(100.0);
        let loss = m.forward(x).square().sum();
        let mut grads = GradientsParams::from_grads(loss.backward(), &m);
        let before = grad_norm(&m, &grads, &dev);
        clip_to(&m, &mut grads, before, 1.0);
        assert!(before > 10.0, "{before}");
        let after = grad_norm(&m, &grads, &dev);
        assert!((after - 1.0).abs() < 1e-4, "{after}");
        // below the limit nothing changes
        clip_to(&m, &mut grads, after, 10.0);
        let again = grad_norm(&m, &grads, &dev);
        assert!((again - after).abs() < 1e-9);
    }
}
