//! The loaded model pairs a run measures on: the run's own session options, and for the `opt` and
//! `iobinding` variants one more pair per alternative option, so both run in the same process and
//! the same repetitions.

use std::sync::Arc;

use specdec::{Device, Error, Model, ModelOptions};

use super::options::BenchOpts;
use crate::{usage, CliError};

/// One loaded target/draft pair. Instance 0 has the run's own session options (--opt-level,
/// spinning, threads); the others, loaded only for the `opt` and `iobinding` variants, differ from
/// it in one option each. Each holds its own ONNX Runtime sessions, so each loads both models again
/// (about 40 MB for the demo pair).
pub(super) struct Instance {
    /// "opt-level 2", "iobinding"; empty for instance 0.
    pub(super) label: String,
    pub(super) optimization_level: u8,
    pub(super) io_binding: bool,
    pub(super) target: Arc<Model>,
    pub(super) draft: Arc<Model>,
}

/// The session options the `opt` and `iobinding` variants compare with the run's own, as
/// (label, graph optimization level, IoBinding): `opt` gives every level of 1..=3 other than
/// --opt-level, `iobinding` the IoBinding path on the CPU at --opt-level.
fn option_sets(o: &BenchOpts) -> Result<Vec<(String, u8, bool)>, CliError> {
    let mut out = Vec::new();
    if o.variants.iter().any(|v| v == "opt") {
        out.extend((1..=3u8).filter(|&l| l != o.opt_level).map(|l| (format!("opt-level {l}"), l, false)));
    }
    if o.variants.iter().any(|v| v == "iobinding") {
        if o.device != Device::Cpu || o.draft_device.is_some_and(|d| d != Device::Cpu) {
            return Err(usage("the `iobinding` bench variant compares IoBinding with the plain path, which exists on the CPU only (CUDA always binds)"));
        }
        out.push(("iobinding".into(), o.opt_level, true));
    }
    Ok(out)
}

/// Instance 0 first, then one per option set, each with both models loaded again.
pub(super) fn load_instances(o: &BenchOpts) -> Result<Vec<Instance>, CliError> {
    let opts = |threads, device, optimization_level, io_binding| ModelOptions {
        intra_threads: threads,
        optimization_level,
        spinning: o.spinning,
        device,
        io_binding,
        ..Default::default()
    };
    let load = |label: String, level: u8, io_binding: bool| -> Result<Instance, Error> {
        Ok(Instance {
            label,
            optimization_level: level,
            io_binding,
            target: Arc::new(Model::load(&o.target, &opts(o.threads, o.device, level, io_binding))?),
            draft: Arc::new(Model::load(
                &o.draft,
                &opts(o.draft_threads, o.draft_device.unwrap_or(o.device), level, io_binding),
            )?),
        })
    };
    let mut instances = vec![load(String::new(), o.opt_level, false)?];
    for (label, level, io_binding) in option_sets(o)? {
        instances.push(load(label, level, io_binding)?);
    }
    Ok(instances)
}

/// How an error message names the instance: nothing for the run's own options, else its label.
pub(super) fn instance_suffix(i: &Instance) -> String {
    if i.label.is_empty() {
        String::new()
    } else {
        format!(" ({})", i.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::options::opts;

    #[test]
    fn option_sets_are_the_other_levels_and_iobinding() {
        let sets = option_sets(&opts("--variants target,opt,iobinding")).ok().unwrap();
        assert_eq!(
            sets,
            vec![
                ("opt-level 1".to_string(), 1, false),
                ("opt-level 2".to_string(), 2, false),
                ("iobinding".to_string(), 3, true)
            ]
        );
        let sets = option_sets(&opts("--variants target,opt --opt-level 2")).ok().unwrap();
        assert_eq!(sets.iter().map(|s| s.1).collect::<Vec<_>>(), vec![1, 3]);
        assert!(option_sets(&opts("--variants target,gammas")).ok().unwrap().is_empty());
        assert!(option_sets(&opts("--variants target,iobinding --device cuda")).is_err());
    }
}
