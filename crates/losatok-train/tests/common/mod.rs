//! Helpers shared by the trainer's integration tests: a module's parameters as host values.
#![allow(dead_code)]

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use losatok_models::checkpoint::torch_names;

/// Every float parameter of a module, in visiting order, one host vector per tensor.
pub fn param_tensors<B: Backend, M: Module<B>>(m: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0
                .push(p.val().into_data().convert::<f32>().into_vec().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Every float parameter of a module, by PyTorch name.
pub fn named_params<B: Backend, M: Module<B>>(m: &M) -> Vec<(String, Vec<f32>)> {
    torch_names(m)
        .into_iter()
        .map(|(k, ..)| k)
        .zip(param_tensors(m))
        .collect()
}

/// Every float parameter of a module, concatenated in visiting order.
pub fn param_values<B: Backend, M: Module<B>>(m: &M) -> Vec<f32> {
    param_tensors(m).concat()
}
