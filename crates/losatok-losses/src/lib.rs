//! Training objectives of LoSATok, each a function named after its paper term with the equation
//! in its doc comment. Generic over `B: Backend` and differentiable under `Autodiff`.
//!
//! | term | where |
//! |---|---|
//! | `L_recon`, `L_tr`, `L_SemBo` (stage 1) | [`sembo::l_recon`], [`sembo::l_tr`], [`sembo::sembo_loss`] |
//! | `L_H`, `L_L`, `L_sem` | [`semantic::l_h`], [`semantic::l_l`], [`semantic::l_sem`] |
//! | `L_KL` (+ optional `L_lv`) | [`kl::l_kl`], [`kl::l_logvar`] |
//! | `L_mel` | [`mel::MultiScaleMelLoss::mel_loss`] |
//! | `L_adv`, `L_fm`, `L_D` | [`adversarial::l_adv`], [`adversarial::l_fm`], [`adversarial::l_d`] |
//!
//! The discriminators themselves are [`losatok_models::discriminator`].

pub mod adversarial;
pub mod kl;
pub mod mel;
pub mod semantic;
pub mod sembo;

pub use adversarial::{l_adv, l_d, l_fm, DLoss, FmReduction, GLoss, GanLossConfig, Reduction};
pub use kl::{kl_per_dim, l_kl, l_logvar};
pub use mel::{MelLossConfig, MultiScaleMelLoss};
pub use semantic::{l_h, l_l, l_sem, SemanticLoss, SemanticLossMode};
pub use sembo::{l_recon, l_tr, sembo_loss, SemboLoss, LAMBDA_RECON};
