//! Feature files and outputs at the edges: frame ranges that overflow (found while fuzzing
//! `FeatureFile`, target `feature_file`: `start + len` wrapped around), and outputs that are
//! devices (a device is written in place, never replaced by a regular file).

use std::path::Path;

use losatok::{FeatureFile, FeatureMetadata, FeatureWriter};

fn write_features(path: &Path, frames: usize) {
    let mut w =
        FeatureWriter::create(path, &[("z", 4)], FeatureMetadata::default(), false).unwrap();
    let values: Vec<f32> = (0..frames * 4).map(|i| i as f32).collect();
    w.append("z", &values).unwrap();
    w.finish().unwrap();
}

#[test]
fn frame_ranges_that_overflow_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.safetensors");
    write_features(&p, 5);
    let f = FeatureFile::open(&p).unwrap();
    assert_eq!(f.frames_and_dim("z").unwrap(), (5, 4));
    assert_eq!(
        f.rows("z", 1, 2).unwrap(),
        (4..12).map(|i| i as f32).collect::<Vec<_>>()
    );
    assert_eq!(f.rows("z", 0, 5).unwrap().len(), 20);
    for (start, len) in [
        (usize::MAX, 2),
        (1, usize::MAX),
        (5, 1),
        (usize::MAX / 4, usize::MAX / 4),
    ] {
        let e = f.rows("z", start, len).unwrap_err().to_string();
        assert!(e.contains("beyond"), "{start} {len}: {e}");
    }
    assert!(f.rows("nope", 0, 1).is_err());
}

/// A device is refused as an output, with or without overwriting, reached directly or
/// through a symbolic link (so that a regression would replace the link, never the device);
/// nothing is left behind.
#[test]
fn a_device_output_is_refused() {
    use std::os::unix::fs::FileTypeExt;
    let null = Path::new("/dev/null");
    if !null.exists() {
        eprintln!("skip: no /dev/null");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("null.safetensors");
    std::os::unix::fs::symlink(null, &link).unwrap();
    for replace in [true, false] {
        for dest in [null, link.as_path()] {
            let e = FeatureWriter::create(dest, &[("z", 4)], FeatureMetadata::default(), replace)
                .err()
                .unwrap_or_else(|| panic!("{} accepted", dest.display()));
            assert!(e.to_string().contains("character device"), "{e}");
        }
    }
    let wav = dir.path().join("null.wav");
    std::os::unix::fs::symlink(null, &wav).unwrap();
    let e = losatok::audio::write_wav(&wav, &[0.0; 100], 16_000, losatok::WavFormat::Pcm16)
        .unwrap_err();
    assert!(e.to_string().contains("character device"), "{e}");
    // still links to the device, and nothing else was left in the folder
    for l in [&link, &wav] {
        assert!(std::fs::symlink_metadata(l)
            .unwrap()
            .file_type()
            .is_symlink());
    }
    assert!(std::fs::metadata(null)
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
