//! Training LoSATok: stage 1 (SemBo) and stage 2 (the LoSATok GAN), with data loading,
//! checkpoints, resume and export. Loops are plain Rust, readable top to bottom, generic over
//! `B: AutodiffBackend`.

pub mod clip;
pub mod collective;
pub mod config;
pub mod data;
pub mod demo;
pub mod distributed;
pub mod error;
pub mod faults;
pub mod metrics;
pub mod run;
pub mod run_folder;
pub mod schedule;
pub mod stage1;
pub mod stage2;
pub mod state;
pub mod watchdog;

pub use config::{Stage1Config, Stage2Config};
pub use error::TrainError;
pub use run::{train_stage1, train_stage2, RunOptions, RunSummary, TrainProgress};
