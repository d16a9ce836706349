//! The bench command's flags: what to measure (models, prompts, variants, γs, temperatures) and
//! how (repetitions, threads, session options, devices), with the defaults of `make bench`.

use std::path::PathBuf;

use specdec::{Device, SamplingConfig};

use crate::{num, usage, CliError};

/// The parsed flags of `specdec bench`; `args` is kept verbatim for the report's `command`.
pub(super) struct BenchOpts {
    pub(super) target: PathBuf,
    pub(super) draft: PathBuf,
    pub(super) prompts: PathBuf,
    pub(super) new_tokens: usize,
    pub(super) repeats: usize,
    pub(super) gammas: Vec<usize>,
    pub(super) temperatures: Vec<f32>,
    /// Truncation at temperatures above 0 (top-k, top-p, min-p); the rest of the config unused.
    pub(super) truncation: SamplingConfig,
    pub(super) variants: Vec<String>,
    /// The speculative setting of the session-option comparison (`opt`, `iobinding`).
    pub(super) options_gamma: usize,
    /// Timed rounds of the call-cost measurement (T(k), c) after its warm-up; default 40.
    pub(super) cost_reps: usize,
    pub(super) threads: usize,
    pub(super) draft_threads: usize,
    pub(super) opt_level: u8,
    pub(super) spinning: bool,
    pub(super) out: PathBuf,
    pub(super) ort_lib: Option<PathBuf>,
    pub(super) device: Device,
    pub(super) draft_device: Option<Device>,
    pub(super) args: Vec<String>,
}

pub(super) fn parse(args: &[String]) -> Result<BenchOpts, CliError> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut o = BenchOpts {
        target: root.join("models/demo/target"),
        draft: root.join("models/demo/draft"),
        prompts: root.join("benches/prompts.jsonl"),
        new_tokens: 128,
        repeats: 5,
        gammas: (1..=8).collect(),
        temperatures: vec![0.0, 1.0],
        truncation: SamplingConfig::default(),
        variants: vec!["target".into(), "gammas".into(), "auto".into()],
        options_gamma: 3,
        cost_reps: 40,
        threads: 1,
        draft_threads: 1,
        opt_level: 3,
        spinning: true,
        out: root.join("target/bench"),
        ort_lib: None,
        device: Device::Cpu,
        draft_device: None,
        args: args.to_vec(),
    };
    // The draft follows --threads unless told: a 150k-vocabulary draft is worth its 2-thread
    // speed (0.95 against 1.9 ms a step), a small one is the same either way (measured).
    let mut draft_threads = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| usage(format!("{name} needs a value")));
        match flag.as_str() {
            "--target" => o.target = value(flag)?.into(),
            "--draft" => o.draft = value(flag)?.into(),
            "--prompts" => o.prompts = value(flag)?.into(),
            "--max-new-tokens" => o.new_tokens = num(flag, &value(flag)?)?,
            "--repeats" => o.repeats = num(flag, &value(flag)?)?,
            "--gammas" => o.gammas = range_list(flag, &value(flag)?)?,
            "--temperatures" => {
                o.temperatures = value(flag)?.split(',').map(|t| num(flag, t.trim())).collect::<Result<_, _>>()?
            }
            "--top-k" => o.truncation.top_k = num(flag, &value(flag)?)?,
            "--top-p" => o.truncation.top_p = num(flag, &value(flag)?)?,
            "--min-p" => o.truncation.min_p = num(flag, &value(flag)?)?,
            "--variants" => o.variants = value(flag)?.split(',').map(|s| s.trim().to_string()).collect(),
            "--options-gamma" => o.options_gamma = num(flag, &value(flag)?)?,
            "--cost-reps" => o.cost_reps = num(flag, &value(flag)?)?,
            "--threads" => o.threads = num(flag, &value(flag)?)?,
            "--draft-threads" => draft_threads = Some(num(flag, &value(flag)?)?),
            "--opt-level" => o.opt_level = num(flag, &value(flag)?)?,
            "--no-spin" => o.spinning = false,
            "--sampling-helper" => match value(flag)?.as_str() {
                "on" => specdec::set_sampling_helper(true),
                "off" => specdec::set_sampling_helper(false),
                v => return Err(usage(format!("--sampling-helper takes on or off, not `{v}`"))),
            },
            "--out" => o.out = value(flag)?.into(),
            "--ort-lib" => o.ort_lib = Some(value(flag)?.into()),
            "--device" => o.device = value(flag)?.parse()?,
            "--draft-device" => o.draft_device = Some(value(flag)?.parse()?),
            "--quick" => {
                o.new_tokens = 24;
                o.repeats = 1;
                o.gammas = vec![1, 4];
            }
            "-h" | "--help" => return Err(usage("help")),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    o.draft_threads = draft_threads.unwrap_or(o.threads);
    if o.repeats == 0
        || o.new_tokens < 2
        || o.gammas.is_empty()
        || o.temperatures.is_empty()
        || o.options_gamma == 0
        || o.cost_reps == 0
    {
        return Err(usage(
            "bench needs --repeats >= 1, --max-new-tokens >= 2, --options-gamma >= 1, --cost-reps >= 1, some gammas and temperatures",
        ));
    }
    let t = SamplingConfig { temperature: 1.0, ..o.truncation.clone() };
    t.validate().map_err(|e| usage(format!("bench: {e}")))?;
    Ok(o)
}

/// "1-8" or "1,2,4".
fn range_list(flag: &str, v: &str) -> Result<Vec<usize>, CliError> {
    if let Some((a, b)) = v.split_once('-') {
        let (a, b): (usize, usize) = (num(flag, a)?, num(flag, b)?);
        return Ok((a..=b).collect());
    }
    v.split(',').map(|s| num(flag, s.trim())).collect()
}

/// The options of a whitespace-separated command line (tests of this module and of the ones that
/// take `BenchOpts`).
#[cfg(test)]
pub(super) fn opts(args: &str) -> BenchOpts {
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    parse(&args).unwrap_or_else(|_| panic!("parse {args:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_gamma_is_parsed_and_checked() {
        assert_eq!(opts("--options-gamma 2").options_gamma, 2);
        assert!(parse(&["--options-gamma".into(), "0".into()]).is_err());
    }
}
