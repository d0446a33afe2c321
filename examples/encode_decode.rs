//! Encode a wav file to LoSATok features and decode it back, with the library API.
//!
//! ```text
//! cargo run --release --example encode_decode                       # tiny test model, fixture audio
//! cargo run --release --example encode_decode -- CHECKPOINT [CONFIG] [INPUT.wav] [OUTPUT.wav]
//! ```
//! With only a checkpoint, the official config and the fixture audio are used.

use std::path::PathBuf;

use losatok::{Cpu, LosatokConfig, Sampling, Tokenizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (checkpoint, config) = match args.first() {
        Some(ckpt) => (
            PathBuf::from(ckpt),
            match args.get(1) {
                Some(c) => LosatokConfig::from_file(c)?,
                None => LosatokConfig::official(),
            },
        ),
        None => (
            fixtures.join("losatok_tiny.pth"),
            LosatokConfig::from_file(fixtures.join("tiny_config.yml"))?,
        ),
    };
    let input = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(|| fixtures.join("input_44k1_stereo_pcm16.wav"));
    let output = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("losatok_example.wav"));

    let device = Default::default();
    let tok = Tokenizer::<Cpu>::load(&checkpoint, &config, &device)?;
    println!(
        "loaded {} (sha256 {}…)",
        checkpoint.display(),
        &tok.checkpoint_sha256()[..12]
    );

    // Any format and rate: decoded, downmixed and resampled to 16 kHz exactly like librosa.
    let samples = losatok::audio::load(&input)?;
    let x = losatok::samples_to_tensor::<Cpu>(&samples, &device);

    let features = tok.encode(x, Sampling::Mean)?;
    for (name, t) in features.named() {
        println!("  {name:<17} {:?}", t.dims());
    }
    let audio = tok.decode(features.z)?;
    let audio = losatok::tensor_to_samples(audio);
    losatok::audio::write_wav(&output, &audio, 16_000, losatok::WavFormat::Float32)?;
    println!(
        "{} ({:.2} s) → {} ({:.2} s)",
        input.display(),
        samples.len() as f64 / 16_000.0,
        output.display(),
        audio.len() as f64 / 16_000.0
    );
    Ok(())
}
