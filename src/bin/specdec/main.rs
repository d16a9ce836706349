//! The `specdec` command: speculative generation from the shell, and the demo.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod bench;

use specdec::drafter::CountTable;
use specdec::{
    Device, DraftSource, Error, FinishReason, GenerationConfig, Generator, Model, ModelOptions, NGramConfig, Stats,
    StreamDecoder, Tokenizer,
};

const USAGE: &str = "\
usage:
  specdec generate --target PATH [--draft PATH] [--gamma N] [--temperature T] [--top-k K]
                   [--top-p P] [--min-p P] [--repetition-penalty R] [--presence-penalty P]
                   [--frequency-penalty F] [--logit-bias ID:BIAS,...] [--seed S]
                   [--max-new-tokens N] (--prompt TEXT | --prompt-ids 1,2,3)
                   [--stop TEXT]... [--stop-ids 1,2]... [--eos-ids 1,2]
                   [--samples N] [--json] [--threads N] [--draft-threads N] [--ort-lib PATH]
                   [--drafter model|ngram|unigram|bigram] [--ngram MIN,MAX,LEN] [--counts FILE]
                   [--draft-policy fixed|heuristic|auto] [--confidence-stop P]
                   [--kv-memory-limit BYTES] [--device cpu|cuda[:N]] [--draft-device D]
                   [--cuda-fallback] [--variant V] [--draft-variant V] [--logprobs N]
                   [--device-reductions on|off]
  specdec demo     [--target PATH] [--draft PATH] [--gamma N] [--max-new-tokens N]
                   [--prompt TEXT] [--repeats N] [--threads N] [--ort-lib PATH]
                   [--device D] [--draft-device D] [--cuda-fallback]

  specdec counts   --target PATH --out FILE TEXT_FILE...   (unigram/bigram counts for --counts)
  specdec bench    [--target PATH] [--draft PATH] [--prompts FILE.jsonl] [--max-new-tokens N]
                   [--repeats N] [--gammas 1-8] [--temperatures 0,1] [--top-k K] [--top-p P] [--min-p P] [--variants LIST]
                   [--threads N] [--draft-threads N] [--opt-level 0-3] [--no-spin] [--out DIR]
                   [--sampling-helper on|off]
                   [--options-gamma N] [--ort-lib PATH] [--device D] [--draft-device D] [--quick]
                   [--cost-reps N]

Greedy (temperature 0) is the default. Without --draft (or --drafter), generation is
target-only. --drafter picks the draft source: model (the --draft model; the default when
--draft is given), ngram (prompt lookup; --ngram sets n_min,n_max,max proposal, default 2,4,8),
unigram or bigram (counts from --counts FILE, else learnt from the sequence).
--threads sets ONNX Runtime's intra-op threads per model (default 1; 0 lets it choose).
--device puts the target (and, unless --draft-device says otherwise, the draft) on cpu (the
default) or a CUDA GPU (cuda = cuda:0), with its KV cache kept on the GPU. CUDA that cannot run
is an error naming what is missing; --cuda-fallback runs on the CPU instead, with a warning.
--device-reductions on|off: reduce logits on the device where sampling needs only each row's
best (greedy: the argmax; top-k: the k best), so that only those reach the host (default on for
CUDA, off on the CPU; the tokens are the same either way).
--target and --draft take a model folder (Optimum export, onnxruntime-genai builder export with
genai_config.json, or onnx-community folder with graphs under onnx/) or an .onnx file. --variant
(--draft-variant) chooses among a folder's graphs: q4 picks model_q4.onnx, default model.onnx.
--logprobs N adds each generated token's log-probability under the target (after the sampling
transforms, and raw) with its N most likely alternatives to the --json output (null: -infinity).
A generation that fills the model's context ends with finish_reason \"length\".
bench variants (comma-separated; default target,gammas,auto): target, gammas (the model draft
at each fixed gamma), auto, heuristic, confidence, ngram, ngram-auto, bigram, unigram, and the
session-option comparison: opt (both models again at each other graph optimization level of
1..3) and iobinding (both models again on the CPU IoBinding path), each run target-only and at
gamma --options-gamma (default 3) beside the run's own options, paired per repetition.
--top-k, --top-p and --min-p truncate the distribution at temperatures above 0 (default off).
bench --draft-threads defaults to --threads. --sampling-helper off samples large rows (vocabularies of
65,536 and more) on the calling thread only, and leaves such models on the shared spinning pool
(default on with two or more cores; SPECDEC_SAMPLING_HELPER=0 does the same for any program).
--cost-reps N sets the timed rounds of the call-cost measurement (T(k)/T(1), c; default 40), spread
over the repetitions (a slice before each) so that the prediction and the runs share the same minutes. It
writes DIR/bench.json and DIR/bench.md (default target/bench) and prints the tables.
The demo defaults to gamma 3, 128 new tokens and 4 bundled code prompts.
ONNX Runtime is loaded from --ort-lib, else $ORT_DYLIB_PATH, else .deps/onnxruntime/
(filled by scripts/setup.sh; for CUDA, .deps/onnxruntime-gpu/ from scripts/setup-gpu.sh).";

/// The demo's code prompts: beginnings of Python code, like the corpus the pair learnt from.
const DEMO_PROMPTS: [&str; 4] = [
    "import os\n\n\ndef walk(top):\n    for name in os.listdir(top):",
    "import os\nimport sys\n\n\ndef main(argv=None):\n    \"\"\"Run the command line interface.\"\"\"\n    if argv is None:\n        argv = sys.argv[1:]\n",
    "class Stack:\n    \"\"\"A last-in, first-out stack.\"\"\"\n\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "def parse_args(argv):\n    parser = argparse.ArgumentParser(description=\"Copy files.\")\n    parser.add_argument(",
];

fn main() -> ExitCode {
    // A bug must still end in one line, never a backtrace on the user's terminal.
    std::panic::set_hook(Box::new(|info| eprintln!("specdec: internal error: {info}")));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(msg)) if msg == "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(CliError::Usage(msg)) => {
            eprintln!("specdec: {msg} (see specdec --help)");
            ExitCode::from(2)
        }
        Err(CliError::Engine(e)) => {
            eprintln!("specdec: error: {e}");
            ExitCode::from(1)
        }
    }
}

enum CliError {
    Usage(String),
    Engine(Error),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Engine(e)
    }
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Options of both subcommands.
#[derive(Default)]
struct Opts {
    target: Option<PathBuf>,
    draft: Option<PathBuf>,
    prompt: Option<String>,
    prompt_ids: Option<Vec<i64>>,
    samples: usize,
    repeats: usize,
    json: bool,
    threads: usize,
    draft_threads: Option<usize>,
    ort_lib: Option<PathBuf>,
    device: Device,
    draft_device: Option<Device>,
    cuda_fallback: bool,
    /// --device-reductions on|off (unset: the default, on for CUDA, off on the CPU).
    device_reductions: Option<bool>,
    variant: Option<String>,
    draft_variant: Option<String>,
    drafter: Option<String>,
    ngram: NGramConfig,
    counts: Option<PathBuf>,
    gamma_given: bool,
    max_given: bool,
    stop_ids: Vec<Vec<i64>>,
    eos_ids: Option<Vec<i64>>,
    cfg: GenerationConfig,
}

fn parse(args: &[String]) -> Result<Opts, CliError> {
    // One intra-op thread per model by default: on a small CPU the draft's and the target's
    // sessions alternate, and two pools of spinning threads slow both down (measured).
    let mut o = Opts { samples: 1, repeats: 5, threads: 1, ..Default::default() };
    // A shell user wants output up to the context's end, not an error there.
    o.cfg.finish_at_context_limit = true;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| usage(format!("{name} needs a value")));
        match flag.as_str() {
            "--target" => o.target = Some(value(flag)?.into()),
            "--draft" => o.draft = Some(value(flag)?.into()),
            "--prompt" => o.prompt = Some(value(flag)?),
            "--prompt-ids" => o.prompt_ids = Some(id_list(flag, &value(flag)?)?),
            "--stop" => o.cfg.stop_texts.push(value(flag)?),
            "--stop-ids" => o.stop_ids.push(id_list(flag, &value(flag)?)?),
            "--eos-ids" => o.eos_ids = Some(id_list(flag, &value(flag)?)?),
            "--gamma" => {
                o.cfg.gamma = num(flag, &value(flag)?)?;
                o.gamma_given = true;
            }
            "--temperature" => o.cfg.sampling.temperature = num(flag, &value(flag)?)?,
            "--top-k" => o.cfg.sampling.top_k = num(flag, &value(flag)?)?,
            "--top-p" => o.cfg.sampling.top_p = num(flag, &value(flag)?)?,
            "--min-p" => o.cfg.sampling.min_p = num(flag, &value(flag)?)?,
            "--repetition-penalty" => o.cfg.sampling.repetition_penalty = num(flag, &value(flag)?)?,
            "--presence-penalty" => o.cfg.sampling.presence_penalty = num(flag, &value(flag)?)?,
            "--frequency-penalty" => o.cfg.sampling.frequency_penalty = num(flag, &value(flag)?)?,
            "--logit-bias" => o.cfg.sampling.logit_bias = logit_bias(&value(flag)?)?,
            "--seed" => o.cfg.seed = num(flag, &value(flag)?)?,
            "--max-new-tokens" => {
                o.cfg.max_new_tokens = num(flag, &value(flag)?)?;
                o.max_given = true;
            }
            "--samples" => o.samples = num(flag, &value(flag)?)?,
            "--repeats" => o.repeats = num(flag, &value(flag)?)?,
            "--threads" => o.threads = num(flag, &value(flag)?)?,
            "--draft-threads" => o.draft_threads = Some(num(flag, &value(flag)?)?),
            "--drafter" => o.drafter = Some(value(flag)?),
            "--ngram" => {
                let v = id_list(flag, &value(flag)?)?;
                let [a, b, c] = v[..] else { return Err(usage("--ngram takes MIN,MAX,LEN")) };
                o.ngram = NGramConfig { n_min: a.max(0) as usize, n_max: b.max(0) as usize, max_proposal: c.max(0) as usize };
            }
            "--counts" => o.counts = Some(value(flag)?.into()),
            "--draft-policy" => o.cfg.draft_policy = value(flag)?.parse()?,
            "--confidence-stop" => o.cfg.confidence_stop = num(flag, &value(flag)?)?,
            "--kv-memory-limit" => o.cfg.kv_memory_limit = Some(num(flag, &value(flag)?)?),
            "--ort-lib" => o.ort_lib = Some(value(flag)?.into()),
            "--device" => o.device = value(flag)?.parse()?,
            "--draft-device" => o.draft_device = Some(value(flag)?.parse()?),
            "--cuda-fallback" => o.cuda_fallback = true,
            "--device-reductions" => {
                o.device_reductions = Some(match value(flag)?.as_str() {
                    "on" => true,
                    "off" => false,
                    v => return Err(usage(format!("--device-reductions takes on or off, not `{v}`"))),
                })
            }
            "--variant" => o.variant = Some(value(flag)?),
            "--draft-variant" => o.draft_variant = Some(value(flag)?),
            "--logprobs" => o.cfg.logprobs = num(flag, &value(flag)?)?,
            "--json" => o.json = true,
            "-h" | "--help" => return Err(usage("help")),
            other => return Err(usage(format!("unknown option `{other}`"))),
        }
    }
    Ok(o)
}

fn id_list(flag: &str, v: &str) -> Result<Vec<i64>, CliError> {
    if v.trim().is_empty() {
        return Ok(Vec::new());
    }
    v.split(',').map(|s| s.trim().parse::<i64>().map_err(|_| usage(format!("{flag}: `{s}` is not an integer")))).collect()
}

/// `--logit-bias 42:-100,7:2.5`: token id and bias pairs (validated with the other settings).
fn logit_bias(v: &str) -> Result<Vec<(u32, f32)>, CliError> {
    let bad = |s: &str| usage(format!("--logit-bias: `{s}` is not ID:BIAS (e.g. 42:-100)"));
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (id, b) = s.split_once(':').ok_or_else(|| bad(s))?;
            Ok((id.trim().parse().map_err(|_| bad(s))?, b.trim().parse().map_err(|_| bad(s))?))
        })
        .collect()
}

/// Token ids given on the command line, checked against the vocabulary.
fn checked_ids(ids: &[i64], vocab: usize) -> Result<Vec<u32>, Error> {
    ids.iter()
        .map(|&id| {
            u32::try_from(id).ok().filter(|&t| (t as usize) < vocab).ok_or(Error::TokenOutOfRange { id, vocab_size: vocab })
        })
        .collect()
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, CliError> {
    v.parse().map_err(|_| usage(format!("{flag}: `{v}` is not a valid number")))
}

fn run(args: &[String]) -> Result<(), CliError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage("missing command"));
    };
    match cmd.as_str() {
        "generate" => generate(parse(rest)?),
        "demo" => demo(parse(rest)?),
        "bench" => bench::bench(rest),
        "counts" => counts(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(usage(format!("unknown command `{other}`"))),
    }
}

struct Loaded {
    target: Arc<Model>,
    draft: Option<Arc<Model>>,
    source: Option<DraftSource>,
    tokenizer: Option<Arc<Tokenizer>>,
}

fn load(o: &Opts, default_target: Option<&str>, default_draft: Option<&str>) -> Result<Loaded, CliError> {
    init_runtime(o.ort_lib.as_deref(), o.device, o.draft_device)?;
    let options = |threads, device, variant: &Option<String>| ModelOptions {
        intra_threads: threads,
        device,
        cuda_fallback_to_cpu: o.cuda_fallback,
        device_reductions: o.device_reductions,
        variant: variant.clone(),
        ..Default::default()
    };
    let target_path = o.target.clone().or(default_target.map(PathBuf::from)).ok_or_else(|| usage("--target is required"))?;
    let target = Arc::new(Model::load(&target_path, &options(o.threads, o.device, &o.variant))?);
    warn_fallback("target", &target);
    let draft_path = o.draft.clone().or(default_draft.map(PathBuf::from));
    let draft_device = o.draft_device.unwrap_or(o.device);
    let draft = draft_path
        .map(|p| Model::load(p, &options(o.draft_threads.unwrap_or(o.threads), draft_device, &o.draft_variant)).map(Arc::new))
        .transpose()?;
    if let Some(d) = &draft {
        warn_fallback("draft", d);
    }
    let source = match (o.drafter.as_deref(), &draft) {
        (None, None) => None,
        (None | Some("model"), Some(d)) => Some(DraftSource::Model(d.clone())),
        (Some("model"), None) => return Err(usage("--drafter model needs --draft")),
        (Some("ngram"), _) => {
            o.ngram.validate()?;
            Some(DraftSource::NGram(o.ngram.clone()))
        }
        (Some(name @ ("unigram" | "bigram")), _) => {
            let table = o.counts.as_ref().map(CountTable::load).transpose()?.map(Arc::new);
            Some(DraftSource::Counts { order: if name == "unigram" { 1 } else { 2 }, table })
        }
        (Some(other), _) => return Err(usage(format!("unknown drafter `{other}` (model, ngram, unigram or bigram)"))),
    };
    // Only a text prompt or text output needs the tokenizer; --prompt-ids works without one.
    let folder =
        if target_path.is_dir() { target_path.clone() } else { target_path.parent().unwrap_or(&target_path).to_path_buf() };
    let tokenizer = match Tokenizer::load(&folder) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) if o.prompt.is_some() || !o.cfg.stop_texts.is_empty() => return Err(e.into()),
        Err(_) => None,
    };
    Ok(Loaded { target, draft, source, tokenizer })
}

/// Load ONNX Runtime: the explicit library, else the default one, which for a CUDA model is the
/// checkout's GPU build when scripts/setup-gpu.sh has fetched it.
pub(crate) fn init_runtime(
    explicit: Option<&std::path::Path>,
    device: Device,
    draft_device: Option<Device>,
) -> Result<(), Error> {
    let cuda = [Some(device), draft_device].into_iter().flatten().any(|d| d != Device::Cpu);
    let gpu = std::path::Path::new(specdec::cuda::PROJECT_LOCAL_ORT_GPU);
    let default_gpu = cuda && explicit.is_none() && std::env::var_os(specdec::runtime::ORT_PATH_ENV).is_none() && gpu.exists();
    specdec::runtime::init(if default_gpu { Some(gpu) } else { explicit })?;
    Ok(())
}

/// A model asked for CUDA that runs on the CPU (only with --cuda-fallback) is logged by the
/// library as a warning on stderr; here only which of the two it is.
pub(crate) fn warn_fallback(which: &str, m: &Model) {
    if m.device_fallback().is_some() {
        eprintln!("specdec: warning: the {which} runs on the CPU ({})", m.path().display());
    }
}

fn prompt_tokens(o: &Opts, m: &Loaded) -> Result<Vec<u32>, CliError> {
    let vocab = m.target.info().vocab_size;
    let ids = match (&o.prompt, &o.prompt_ids) {
        (Some(_), Some(_)) => return Err(usage("give either --prompt or --prompt-ids, not both")),
        (None, None) => return Err(usage("a prompt is required (--prompt or --prompt-ids)")),
        (Some(text), None) => m.tokenizer.as_ref().expect("loaded for text prompts").encode(text)?,
        (None, Some(ids)) => checked_ids(ids, vocab)?,
    };
    if ids.is_empty() {
        return Err(Error::InvalidArgument("the prompt is empty".into()).into());
    }
    Ok(ids)
}

fn generate(mut o: Opts) -> Result<(), CliError> {
    o.cfg.validate()?;
    if o.samples == 0 {
        return Err(usage("--samples must be at least 1"));
    }
    let m = load(&o, None, None)?;
    let prompt = prompt_tokens(&o, &m)?;
    let vocab = m.target.info().vocab_size;
    for ids in &o.stop_ids {
        o.cfg.stop_sequences.push(checked_ids(ids, vocab)?);
    }
    if let Some(ids) = &o.eos_ids {
        o.cfg.eos_ids = Some(checked_ids(ids, vocab)?);
    }
    o.cfg.validate()?;
    let stdout = std::io::stdout();
    for i in 0..o.samples {
        let cfg = GenerationConfig { seed: o.cfg.seed.wrapping_add(i as u64), ..o.cfg.clone() };
        let mut g = Generator::from_source(m.target.clone(), m.source.as_ref(), cfg)?;
        if let Some(t) = &m.tokenizer {
            g.set_tokenizer(t.clone());
        }
        g.append_tokens(&prompt)?;
        if o.json {
            let reason = g.generate(|_| true)?;
            let new = &g.tokens()[prompt.len()..];
            let text = match &m.tokenizer {
                Some(t) => t.decode_known(new)?,
                None => String::new(),
            };
            let mut line = serde_json::json!({
                "seed": g.config().seed,
                "tokens": new,
                "text": text,
                "finish_reason": reason_name(reason),
                "stats": stats_json(g.stats()),
            });
            if o.cfg.logprobs > 0 {
                line["logprobs"] = logprobs_json(&g, m.tokenizer.as_deref())?;
            }
            // Logits rows reduced on the device so far (models are loaded once per run, so this
            // counts every sample's rows): whether the reductions were used.
            line["rows_reduced"] = serde_json::json!({
                "target": m.target.reduced_rows(),
                "draft": m.draft.as_ref().map_or(0, |d| d.reduced_rows()),
            });
            writeln!(stdout.lock(), "{line}").ok();
        } else {
            let mut stream = StreamDecoder::new();
            let tok = m.tokenizer.as_deref();
            let mut err = None;
            let reason = g.generate(|new| {
                let mut out = stdout.lock();
                let written = match tok.map(|t| stream.push(t, &t.known_ids(new))) {
                    Some(Ok(text)) => write!(out, "{text}").is_ok(),
                    Some(Err(e)) => {
                        err = Some(e);
                        false
                    }
                    None => write!(out, "{} ", new.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")).is_ok(),
                };
                written && out.flush().is_ok()
            })?;
            if let Some(e) = err {
                return Err(e.into());
            }
            if let Some(t) = tok {
                print!("{}", stream.flush(t)?);
            }
            println!();
            eprintln!("{}", summary(g.stats(), reason));
        }
    }
    Ok(())
}

/// Unigram and bigram counts of text files, tokenized with the target's tokenizer, for --counts.
fn counts(args: &[String]) -> Result<(), CliError> {
    let (mut target, mut out, mut files) = (None, None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" => target = it.next(),
            "--out" => out = it.next(),
            flag if flag.starts_with("--") => return Err(usage(format!("unknown option `{flag}`"))),
            file => files.push(file),
        }
    }
    let target = target.ok_or_else(|| usage("counts needs --target PATH (for its tokenizer)"))?;
    let out = out.ok_or_else(|| usage("counts needs --out FILE"))?;
    if files.is_empty() {
        return Err(usage("counts needs at least one text file"));
    }
    let tok = Tokenizer::load(target)?;
    let mut ids = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| Error::InvalidArgument(format!("{f}: {e}")))?;
        ids.extend(tok.encode(&text)?);
    }
    CountTable::from_tokens(&ids).save(out)?;
    println!("{} tokens counted into {out}", ids.len());
    Ok(())
}

/// Each generated token's log-probabilities, OpenAI style: `{"token", "text", "logprob",
/// "raw_logprob", "top_logprobs": [...]}`; −∞ becomes null (JSON has no infinity).
fn logprobs_json(g: &Generator, tok: Option<&Tokenizer>) -> Result<serde_json::Value, Error> {
    let lp = g.logprobs();
    let entry = |t: &specdec::TokenLogprob| -> Result<serde_json::Value, Error> {
        let number = |x: f32| if x.is_finite() { serde_json::json!(x) } else { serde_json::Value::Null };
        let mut e = serde_json::json!({"token": t.token, "logprob": number(t.logprob), "raw_logprob": number(t.raw_logprob)});
        if let Some(tok) = tok {
            e["text"] = serde_json::json!(tok.decode(&[t.token])?);
        }
        Ok(e)
    };
    let mut out = Vec::with_capacity(lp.len());
    for (i, t) in lp.chosen().iter().enumerate() {
        let mut e = entry(t)?;
        e["top_logprobs"] = serde_json::Value::Array(lp.top(i).iter().map(entry).collect::<Result<_, _>>()?);
        out.push(e);
    }
    Ok(serde_json::Value::Array(out))
}

fn reason_name(r: FinishReason) -> &'static str {
    r.as_str()
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn stats_json(s: &Stats) -> serde_json::Value {
    serde_json::json!({
        "target_calls": s.target_calls,
        "draft_calls": s.draft_calls,
        "rounds": s.rounds,
        "drafted": s.drafted,
        "accepted": s.accepted,
        "new_tokens": s.new_tokens,
        "acceptance_rate": s.acceptance_rate(),
        "tokens_per_target_call": s.tokens_per_target_call(),
        "tokens_per_second": s.tokens_per_second(),
        "draft_ms": ms(s.draft_time),
        "target_ms": ms(s.target_time),
        "other_ms": ms(s.other_time()),
        "total_ms": ms(s.total_time),
        "time_to_first_token_ms": ms(s.time_to_first_token),
    })
}

fn summary(s: &Stats, reason: FinishReason) -> String {
    format!(
        "[{} tokens, {}; {:.1} tok/s; acceptance {:.1}% ({}/{}); {:.2} tokens/target call; target {} calls {:.1} ms, draft {} calls {:.1} ms, other {:.1} ms]",
        s.new_tokens,
        reason_name(reason),
        s.tokens_per_second(),
        100.0 * s.acceptance_rate(),
        s.accepted,
        s.drafted,
        s.tokens_per_target_call(),
        s.target_calls,
        ms(s.target_time),
        s.draft_calls,
        ms(s.draft_time),
        ms(s.other_time()),
    )
}

/// Speculative generation on the bundled demo pair beside target-only generation of the same
/// prompts: prints a continuation, the acceptance rate and the measured speed-up (medians over
/// interleaved repetitions after a warm-up, of the total time for all prompts), and checks that
/// both produce identical tokens.
fn demo(mut o: Opts) -> Result<(), CliError> {
    let root = env!("CARGO_MANIFEST_DIR");
    let (t, d) = (format!("{root}/models/demo/target"), format!("{root}/models/demo/draft"));
    if !o.max_given {
        o.cfg.max_new_tokens = 128;
    }
    if !o.gamma_given {
        o.cfg.gamma = 3;
    }
    o.cfg.validate()?;
    let texts: Vec<String> = match &o.prompt {
        Some(p) => vec![p.clone()],
        None => DEMO_PROMPTS.iter().map(|p| p.to_string()).collect(),
    };
    let m = load(&o, Some(&t), Some(&d))?;
    let tok = m.tokenizer.as_ref().ok_or_else(|| usage("the demo needs the target's tokenizer.json"))?;
    let prompts = texts.iter().map(|p| tok.encode(p)).collect::<Result<Vec<_>, _>>()?;
    let run_once = |draft: Option<Arc<Model>>, prompt: &[u32]| -> Result<Generator, CliError> {
        let mut g = Generator::new(m.target.clone(), draft, o.cfg.clone())?;
        g.append_tokens(prompt)?;
        g.generate(|_| true)?;
        Ok(g)
    };
    // Warm-up: the first calls of a session allocate and plan.
    run_once(m.draft.clone(), &prompts[0])?;
    run_once(None, &prompts[0])?;
    let (mut base, mut spec) = (Vec::new(), Vec::new());
    let mut totals = Stats::default();
    let mut first = None;
    for rep in 0..o.repeats.max(1) {
        let (mut b_time, mut s_time, mut tokens) = (0.0, 0.0, 0u64);
        for prompt in &prompts {
            let b = run_once(None, prompt)?;
            let s = run_once(m.draft.clone(), prompt)?;
            if b.tokens() != s.tokens() {
                return Err(Error::Inference("speculative output differs from target-only output".into()).into());
            }
            b_time += b.stats().total_time.as_secs_f64();
            s_time += s.stats().total_time.as_secs_f64();
            tokens += s.stats().new_tokens;
            if rep == 0 {
                totals += s.stats();
            }
            first.get_or_insert_with(|| s.tokens()[prompt.len()..].to_vec());
        }
        base.push(tokens as f64 / b_time);
        spec.push(tokens as f64 / s_time);
    }
    let (b_med, s_med) = (median(&mut base), median(&mut spec));
    println!("--- prompt 1 of {} ---\n{}", texts.len(), texts[0]);
    println!(
        "--- speculative continuation (greedy, gamma {}) ---\n{}",
        o.cfg.gamma,
        tok.decode_known(first.as_deref().unwrap_or(&[]))?
    );
    println!("---");
    println!(
        "prompts              {} code prompts, {} new tokens each (greedy), {} intra-op thread(s) per model",
        texts.len(),
        o.cfg.max_new_tokens,
        o.threads
    );
    println!(
        "acceptance rate      {:.1}% ({} of {} drafted tokens)",
        100.0 * totals.acceptance_rate(),
        totals.accepted,
        totals.drafted
    );
    println!("tokens per target call {:.2}", totals.tokens_per_target_call());
    println!("target-only          {b_med:.1} tokens/s");
    println!("speculative          {s_med:.1} tokens/s");
    println!("speed-up             {:.2}x (median of {} interleaved runs; outputs identical)", s_med / b_med, base.len());
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}
