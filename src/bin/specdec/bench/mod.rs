//! `specdec bench`: the measured speed-up beside the paper's prediction from measured α, c and
//! verification cost. Everything runs in one process, interleaved per repetition after a warm-up,
//! so slow drifts of the machine hit every variant alike.
//!
//! The steps, one module each: the flags (options), the model pairs loaded (instances), what is
//! measured and in which order (variants), the call costs the prediction is built from (costs),
//! the measured runs (run), and the figures written to bench.json and bench.md (report).

use specdec::{Error, Tokenizer};

use crate::CliError;

mod costs;
mod instances;
mod options;
mod report;
mod run;
mod variants;

pub fn bench(args: &[String]) -> Result<(), CliError> {
    let o = options::parse(args)?;
    crate::init_runtime(o.ort_lib.as_deref(), o.device, o.draft_device)?;
    let instances = instances::load_instances(&o)?;
    let (target, draft_model) = (instances[0].target.clone(), instances[0].draft.clone());
    let tok = Tokenizer::load(&o.target)?;
    let prompts = run::load_prompts(&o.prompts, &tok)?;
    let (mut vs, groups) = variants::variants(&o, &instances)?;

    // The call costs (T_target(k) for k = 1..=9, T_draft(1)) after a prefix as long as the average
    // context during the runs (attention cost grows with it), measured in slices before each
    // repetition: the prediction then rests on the same minutes of the machine as the runs.
    let mean_prompt = prompts.iter().map(Vec::len).sum::<usize>() / prompts.len();
    let prefix: Vec<u32> = prompts.concat().into_iter().cycle().take(mean_prompt + o.new_tokens / 2).collect();
    let mut samples = costs::CostSamples::default();
    let slice = o.cost_reps.div_ceil(o.repeats).max(4);
    let mut measure = || samples.measure(&target, &draft_model, &prefix, 9, slice);
    let checks = run::run_all(&o, &instances, &mut vs, &groups, &prompts, &mut measure)?;
    let costs = samples.costs();
    let t0 = costs.target_only;
    let verify = |k: usize| costs.target.get(k - 1).map_or(1.0 + 0.1 * (k as f64 - 1.0), |t| t.0 / t0);

    let report = report::Report {
        o: &o,
        vs: &vs,
        instances: &instances,
        greedy_diff: &checks.greedy_diff,
        near_ties: &checks.near_ties,
        costs: &costs,
        verify: &verify,
        prompts: prompts.len(),
    };
    std::fs::create_dir_all(&o.out).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.display())))?;
    let json = report.json();
    let md = report.markdown();
    let write = |name: &str, body: String| {
        std::fs::write(o.out.join(name), body).map_err(|e| Error::InvalidArgument(format!("{}: {e}", o.out.join(name).display())))
    };
    write("bench.json", serde_json::to_string_pretty(&json).unwrap_or_default())?;
    write("bench.md", md.clone())?;
    println!("{md}");
    println!("wrote {} and {}", o.out.join("bench.json").display(), o.out.join("bench.md").display());
    Ok(())
}
