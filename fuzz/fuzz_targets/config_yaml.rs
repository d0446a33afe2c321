//! Any text → the model config (official layout) and both training configs, parsed and
//! validated as the tools do: errors are fine, panics are not, and a config that validates
//! describes a model of bounded size (so building it cannot exhaust memory).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = losatok_models::LosatokConfig::from_yaml_str(text) {
        assert!(cfg.parameter_estimate() <= losatok_models::config::MAX_PARAMETERS);
        let _ = cfg.to_yaml_string();
    }
    if let Ok(cfg) = losatok_models::yaml::from_str::<losatok_train::Stage1Config>(text) {
        let _ = cfg.validate();
    }
    if let Ok(cfg) = losatok_models::yaml::from_str::<losatok_train::Stage2Config>(text) {
        let _ = cfg.validate();
    }
});
