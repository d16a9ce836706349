//! Chat templates: the Jinja template of a model's tokenizer_config.json (or chat_template.jinja)
//! rendered the way Hugging Face transformers' `apply_chat_template` renders it, so a prompt built
//! here is byte for byte the prompt the model was trained on.
//!
//! Rendered with minijinja in transformers' settings: blocks trimmed (`trim_blocks`,
//! `lstrip_blocks`), loop controls, `raise_exception(msg)` failing the render with `msg`,
//! `strftime_now(fmt)`, `tojson` as Python's `json.dumps` (no HTML escaping, `indent`,
//! `separators`, `sort_keys`, `ensure_ascii`), and Python's string, list and dict methods
//! (`.strip()`, `.startswith()`, `.items()`, ...). The template sees `messages` (a list of
//! `{"role", "content"}`), `add_generation_prompt`, and the special tokens `bos_token`,
//! `eos_token`, `pad_token`, `unk_token` that tokenizer_config.json names.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Enumerator, Kwargs, Object, ValueKind};
use minijinja::{Environment, ErrorKind, Value};

use crate::error::{Error, Result};

/// One message of a conversation: `role` ("system", "user", "assistant", ...) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }
}

/// A message as the template sees it: a mapping with the keys `role` and `content`, in that order
/// (as the Python dict transformers passes; `tojson` writes them so).
#[derive(Debug)]
struct Message(ChatMessage);

impl Object for Message {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.as_str())),
            "content" => Some(Value::from(self.0.content.as_str())),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Str(&["role", "content"])
    }
}

/// The special tokens a chat template may use, from tokenizer_config.json (strings or
/// `{"content": ...}` objects) or special_tokens_map.json. `None` leaves the variable undefined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
}

impl SpecialTokens {
    fn fill_from(&mut self, config: &serde_json::Value) {
        let get = |key: &str| -> Option<String> {
            match config.get(key)? {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        for (slot, key) in [
            (&mut self.bos_token, "bos_token"),
            (&mut self.eos_token, "eos_token"),
            (&mut self.pad_token, "pad_token"),
            (&mut self.unk_token, "unk_token"),
        ] {
            if slot.is_none() {
                *slot = get(key);
            }
        }
    }
}

/// A compiled chat template with the special tokens it renders with. Immutable; cheap to share.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    special: SpecialTokens,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).field("special", &self.special).finish()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile `source` (Jinja). Errors: `Error::Tokenizer` with the syntax error and its line.
    pub fn new(source: &str, special: SpecialTokens) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Python prints True, False and None where minijinja prints true, false and none.
        env.add_filter("string", |v: Value| Value::from(python_str(&v)));
        env.set_formatter(|out, state, v| match v.kind() {
            ValueKind::Bool | ValueKind::None => out.write_str(&python_str(v)).map_err(minijinja::Error::from),
            _ => minijinja::escape_formatter(out, state, v),
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| Error::Tokenizer(format!("chat template: {}", describe(&e))))?;
        Ok(ChatTemplate { env, source: source.to_string(), special })
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The special tokens it renders with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The prompt text for `messages`; with `add_generation_prompt` it ends with the header of an
    /// assistant turn (as the template defines it). Errors: `Error::Tokenizer` with the
    /// template's `raise_exception` message or the render error.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages.iter().map(|m| Value::from_object(Message(m.clone()))).collect();
        let mut ctx: BTreeMap<&'static str, Value> = BTreeMap::new();
        ctx.insert("messages", Value::from(messages));
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        for (key, value) in [
            ("bos_token", &self.special.bos_token),
            ("eos_token", &self.special.eos_token),
            ("pad_token", &self.special.pad_token),
            ("unk_token", &self.special.unk_token),
        ] {
            if let Some(v) = value {
                ctx.insert(key, Value::from(v.as_str()));
            }
        }
        let template = self.env.get_template(NAME).map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        template.render(Value::from(ctx)).map_err(|e| Error::Tokenizer(format!("chat template: {}", describe(&e))))
    }

    /// The template of the tokenizer folder `dir`, as transformers finds it: chat_template.jinja,
    /// else chat_template.json's `chat_template`, else tokenizer_config.json's `chat_template` (a
    /// string, or a list of `{name, template}` whose "default" is taken). Special tokens come
    /// from tokenizer_config.json, then special_tokens_map.json. `Ok((None, tokens))` when the
    /// folder has no template.
    pub fn find_in(dir: &Path) -> Result<(Option<ChatTemplate>, SpecialTokens)> {
        let read_json = |name: &str| -> Result<Option<serde_json::Value>> {
            let path = dir.join(name);
            if !path.is_file() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            serde_json::from_str(&text).map(Some).map_err(|e| Error::Tokenizer(format!("{}: invalid JSON: {e}", path.display())))
        };
        let config = read_json("tokenizer_config.json")?;
        let mut special = SpecialTokens::default();
        if let Some(c) = &config {
            special.fill_from(c);
        }
        if let Some(m) = read_json("special_tokens_map.json")? {
            special.fill_from(&m);
        }
        let jinja = dir.join("chat_template.jinja");
        let source = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
        } else if let Some(t) = read_json("chat_template.json")?.as_ref().and_then(|j| j.get("chat_template")) {
            template_field(t, "chat_template.json")?
        } else if let Some(t) = config.as_ref().and_then(|c| c.get("chat_template")) {
            template_field(t, "tokenizer_config.json")?
        } else {
            None
        };
        match source {
            Some(s) => Ok((Some(ChatTemplate::new(&s, special.clone())?), special)),
            None => Ok((None, special)),
        }
    }
}

/// A `chat_template` field: a string, or a list of `{"name", "template"}` (the "default" one).
fn template_field(v: &serde_json::Value, file: &str) -> Result<Option<String>> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s.clone())),
        serde_json::Value::Array(list) => {
            for entry in list {
                if entry.get("name").and_then(|n| n.as_str()) == Some("default") {
                    return match entry.get("template").and_then(|t| t.as_str()) {
                        Some(t) => Ok(Some(t.to_string())),
                        None => Err(Error::Tokenizer(format!("{file}: the \"default\" chat template is not a string"))),
                    };
                }
            }
            Err(Error::Tokenizer(format!("{file}: several chat templates and none named \"default\"; set one explicitly")))
        }
        _ => Err(Error::Tokenizer(format!("{file}: chat_template is neither a string nor a list"))),
    }
}

/// A minijinja error with its causes (the template's own message first for raise_exception).
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

/// Python's `str()` of a bool or None; other values as minijinja writes them.
fn python_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::Bool => if v.is_true() { "True" } else { "False" }.into(),
        ValueKind::None => "None".into(),
        ValueKind::Undefined => String::new(),
        _ => v.to_string(),
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// The local time formatted by the C library's strftime (what Python's `datetime.strftime` uses).
fn strftime_now(format: String) -> std::result::Result<String, minijinja::Error> {
    let bad = || minijinja::Error::new(ErrorKind::InvalidOperation, "strftime_now: bad format");
    let fmt = std::ffi::CString::new(format.clone()).map_err(|_| bad())?;
    // SAFETY: time and localtime_r write into the locals given; strftime writes at most buf.len()
    // bytes and returns how many it wrote (0 when the result does not fit).
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return Err(bad());
        }
        let mut buf = vec![0u8; 256 + 4 * format.len()];
        let n = libc::strftime(buf.as_mut_ptr() as *mut libc::c_char, buf.len(), fmt.as_ptr(), &tm);
        if n == 0 && !format.is_empty() {
            return Err(bad());
        }
        buf.truncate(n);
        String::from_utf8(buf).map_err(|_| bad())
    }
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => {
                return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: indent must be an integer or a string"))
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !(v.is_none() || v.is_undefined()) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                    (a.as_str().unwrap_or_default().to_string(), b.as_str().unwrap_or_default().to_string())
                }
                _ => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: separators must be two strings")),
            }
        }
        _ => (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    dump(&value, &opts, 0, &mut out)?;
    Ok(out)
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn dump(v: &Value, o: &JsonOpts, depth: usize, out: &mut String) -> std::result::Result<(), minijinja::Error> {
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                out.push_str(&v.to_string());
            } else {
                let f = f64::try_from(v.clone())?;
                out.push_str(&python_float(f));
            }
        }
        ValueKind::String => quote(v.as_str().unwrap_or(""), o.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            container(out, o, depth, '[', ']', items.len(), |i, out| dump(&items[i], o, depth + 1, out))?;
        }
        ValueKind::Map | ValueKind::Plain => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in v.try_iter()? {
                let item = v.get_item(&key)?;
                let name = match key.kind() {
                    ValueKind::String => key.as_str().unwrap_or("").to_string(),
                    ValueKind::None => "null".into(),
                    ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
                    ValueKind::Number if key.is_integer() => key.to_string(),
                    ValueKind::Number => python_float(f64::try_from(key.clone())?),
                    k => {
                        return Err(minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!("tojson: keys must be strings, not {k}"),
                        ))
                    }
                };
                entries.push((name, item));
            }
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            container(out, o, depth, '{', '}', entries.len(), |i, out| {
                quote(&entries[i].0, o.ensure_ascii, out);
                out.push_str(&o.key_sep);
                dump(&entries[i].1, o, depth + 1, out)
            })?;
        }
        k => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a value of type {k} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

/// `[`, the items separated as json.dumps separates them (one per line when indenting), `]`.
fn container(
    out: &mut String,
    o: &JsonOpts,
    depth: usize,
    open: char,
    close: char,
    n: usize,
    mut item: impl FnMut(usize, &mut String) -> std::result::Result<(), minijinja::Error>,
) -> std::result::Result<(), minijinja::Error> {
    out.push(open);
    if n == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    newline(out, depth + 1);
    for i in 0..n {
        if i > 0 {
            out.push_str(&o.item_sep);
            newline(out, depth + 1);
        }
        item(i, out)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// Python's `repr` of a float, which json.dumps uses.
fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Shortest round-trip digits in exponent form: 1e+20, 1.5e-05.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        return format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A JSON string literal as Python's json module writes it.
fn quote(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, messages: &[ChatMessage]) -> Result<String> {
        ChatTemplate::new(src, SpecialTokens::default())?.render(messages, false)
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let m = [ChatMessage::new("user", "é \"q\" <b>\n")];
        assert_eq!(render("{{ messages | tojson }}", &m).unwrap(), r#"[{"role": "user", "content": "é \"q\" <b>\n"}]"#);
        assert_eq!(
            render("{{ messages[0] | tojson(indent=2, sort_keys=true) }}", &m).unwrap(),
            "{\n  \"content\": \"é \\\"q\\\" <b>\\n\",\n  \"role\": \"user\"\n}"
        );
        assert_eq!(
            render("{{ [1, 2.5, 1.0, none, true, {}] | tojson(separators=[',', ':']) }}", &[]).unwrap(),
            "[1,2.5,1.0,null,true,{}]"
        );
        assert_eq!(render("{{ 'é' | tojson(ensure_ascii=true) }}", &[]).unwrap(), r#""\u00e9""#);
    }

    #[test]
    fn raise_exception_fails_with_its_message() {
        let e = render("{{ raise_exception('roles must alternate') }}", &[]).unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
    }

    #[test]
    fn python_string_methods_and_syntax_errors() {
        let m = [ChatMessage::new("user", "  Hi there  ")];
        let src = "{{ messages[0].content.strip().upper() }}|{{ messages[0].role.title() }}|{{ messages[0].content.startswith('  Hi') }}";
        assert_eq!(render(src, &m).unwrap(), "HI THERE|User|True");
        let e = ChatTemplate::new("{% for m in messages %}", SpecialTokens::default()).unwrap_err();
        assert!(e.to_string().contains("chat template"), "{e}");
    }

    #[test]
    fn python_floats() {
        assert_eq!(python_float(1e20), "1e+20");
        assert_eq!(python_float(1.5e-5), "1.5e-05");
        assert_eq!(python_float(0.1), "0.1");
        assert_eq!(python_float(3.0), "3.0");
    }
}
