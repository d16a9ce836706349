//! Log messages, specdec's own and ONNX Runtime's, go to the host's callback at the host's
//! threshold. One test: the sink and the threshold are process-wide.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use specdec::logging::{self, LogLevel, LogSource};
use specdec::{Error, Model, ModelOptions};

type Seen = Arc<Mutex<Vec<(LogLevel, LogSource, String)>>>;

fn collect(seen: &Seen) -> logging::LogCallback {
    let seen = seen.clone();
    Arc::new(move |level, source, message: &str| seen.lock().unwrap().push((level, source, message.to_string())))
}

#[test]
fn messages_reach_the_callback_at_the_threshold() {
    specdec::runtime::init(None).unwrap();
    let bare = std::env::temp_dir().join(format!("specdec-logging-{}", std::process::id()));
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(fixture("llama").join("model.onnx"), bare.join("model.onnx")).unwrap();
    let options = ModelOptions { intra_threads: 1, ..Default::default() };
    let seen: Seen = Arc::default();
    assert_eq!(logging::level(), LogLevel::Warning, "the default threshold");
    logging::set_callback(Some(collect(&seen))).unwrap();

    // specdec's own warning: a context length nobody states.
    Model::load(&bare, &options).unwrap();
    {
        let seen = seen.lock().unwrap();
        let warning = seen.iter().find(|(_, s, m)| *s == LogSource::Specdec && m.contains("context length is unknown"));
        assert!(matches!(warning, Some((LogLevel::Warning, ..))), "{seen:?}");
        assert!(seen.iter().all(|(l, ..)| *l >= LogLevel::Warning), "below the threshold: {seen:?}");
    }

    // ONNX Runtime's messages, at verbose, come through the same callback.
    seen.lock().unwrap().clear();
    logging::set_level(LogLevel::Verbose);
    Model::load(fixture("draft"), &options).unwrap();
    {
        let seen = seen.lock().unwrap();
        let ort = seen.iter().filter(|(_, s, _)| *s == LogSource::OnnxRuntime).count();
        assert!(ort > 0, "no ONNX Runtime message at verbose");
        assert!(seen.iter().any(|(l, s, m)| *l == LogLevel::Info && *s == LogSource::Specdec && m.contains("loaded")));
        println!(
            "{ort} ONNX Runtime messages at verbose while loading a model, e.g. {:?}",
            seen.iter().find(|m| m.1 == LogSource::OnnxRuntime)
        );
    }

    // Off: nothing.
    seen.lock().unwrap().clear();
    logging::set_level(LogLevel::Off);
    Model::load(&bare, &options).unwrap();
    assert!(seen.lock().unwrap().is_empty());

    // A callback that re-enters: replacing itself is refused, logging from inside is dropped, the
    // threshold may change.
    logging::set_level(LogLevel::Warning);
    let outcomes: Arc<Mutex<Vec<String>>> = Arc::default();
    let inner = outcomes.clone();
    logging::set_callback(Some(Arc::new(move |_level, _source, message: &str| {
        let replaced = logging::set_callback(None);
        logging::log(LogLevel::Error, LogSource::Specdec, "from inside the callback");
        logging::set_level(LogLevel::Warning);
        inner.lock().unwrap().push(format!("{message} -> {replaced:?}"));
    })))
    .unwrap();
    Model::load(&bare, &options).unwrap();
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(outcomes[0].contains("Busy"), "{outcomes:?}");
    assert!(matches!(Error::Busy(String::new()).code(), 7015));

    // A panicking callback is contained.
    logging::set_callback(Some(Arc::new(|_, _, _: &str| panic!("host bug")))).unwrap();
    logging::log(LogLevel::Error, LogSource::Specdec, "to a panicking callback");
    logging::set_callback(None).unwrap();
    std::fs::remove_dir_all(&bare).ok();
}
