//! Text ↔ token ids: Hugging Face `tokenizer.json` (the `tokenizers` crate) with the chat template
//! of `tokenizer_config.json` (rendered by `minijinja`), and a built-in character-level tokenizer
//! for synthetic tasks.

use crate::error::{ModelError, Result};
use rlvr_core::TextCodec;
use std::path::Path;

/// One chat message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    /// The text.
    pub content: String,
}

/// A HF tokenizer with its special tokens and chat template.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    eos: Vec<i64>,
    pad: i64,
    /// The chat template, compiled once (rendering a prompt does not parse it again).
    chat_env: Option<minijinja::Environment<'static>>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Whether prompts go through the chat template (the folder has `tokenizer_config.json`).
    chat: bool,
}

fn token_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        _ => None,
    }
}

/// A model folder's chat template, where transformers keeps it: `chat_template.jinja` (what
/// transformers ≥ 4.43 writes), else `tokenizer_config.json`'s `chat_template` (a string, or a
/// list of named templates of which `default` is used).
fn chat_template(dir: &Path, cfg: &serde_json::Value) -> Result<Option<String>> {
    let file = dir.join("chat_template.jinja");
    if file.is_file() {
        return Ok(Some(
            std::fs::read_to_string(&file).map_err(|e| ModelError::io(&file, e))?,
        ));
    }
    Ok(match cfg.get("chat_template") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    })
}

impl HfTokenizer {
    /// Loads `tokenizer.json` and (if present) `tokenizer_config.json` and `chat_template.jinja`
    /// from a model folder.
    pub fn from_dir(dir: &Path) -> Result<HfTokenizer> {
        let path = dir.join("tokenizer.json");
        let inner =
            tokenizers::Tokenizer::from_file(&path).map_err(|e| ModelError::io(&path, e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let chat = cfg_path.exists();
        let cfg: serde_json::Value = if chat {
            let text =
                std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
            serde_json::from_str(&text).map_err(|e| ModelError::io(&cfg_path, e))?
        } else {
            serde_json::Value::Null
        };
        let eos_token = cfg.get("eos_token").and_then(token_text);
        let bos_token = cfg.get("bos_token").and_then(token_text);
        let pad_token = cfg
            .get("pad_token")
            .and_then(token_text)
            .or_else(|| eos_token.clone());
        let id = |t: &Option<String>| t.as_ref().and_then(|t| inner.token_to_id(t)).map(i64::from);
        let eos: Vec<i64> = id(&eos_token).into_iter().collect();
        let pad = id(&pad_token).or_else(|| eos.first().copied()).unwrap_or(0);
        let chat_env = chat_template(dir, &cfg)?
            .map(chat_environment)
            .transpose()?;
        Ok(HfTokenizer {
            inner,
            eos,
            pad,
            chat_env,
            bos_token,
            eos_token,
            chat,
        })
    }

    /// Whether [`TextCodec::render_prompt`] applies the chat template (a chat model's tokenizer,
    /// one with `tokenizer_config.json`).
    pub fn is_chat(&self) -> bool {
        self.chat
    }

    /// This tokenizer with prompts rendered through the chat template (`true`) or as plain text.
    pub fn with_chat(mut self, chat: bool) -> HfTokenizer {
        self.chat = chat;
        self
    }

    /// Renders messages with the chat template (`add_generation_prompt` opens the assistant turn).
    /// Without a template, the contents are joined by newlines.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let Some(env) = &self.chat_env else {
            return Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"));
        };
        let tmpl = env
            .get_template("chat")
            .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        })
        .map_err(|e| ModelError::Tokenizer(format!("chat template: {e}")))
    }
}

/// The template environment of a chat template: published templates (Qwen3, Llama 3.x) call
/// Python string methods (`startswith`, `strip`, `split`, ...) and transformers'
/// `raise_exception` and `strftime_now`. A template that does not parse fails here, at load.
fn chat_environment(template: String) -> Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("the template raised: {message}"),
            ))
        },
    );
    env.add_function("strftime_now", |format: String| strftime_now(&format));
    env.add_template_owned("chat", template)
        .map_err(|e| ModelError::Tokenizer(format!("chat template: {e}")))?;
    Ok(env)
}

/// Today's date and time (UTC) in a `strftime` format, for templates that date their system
/// prompt (transformers' `strftime_now`): `%Y %y %m %d %e %B %b %A %a %H %M %S %j %%`.
fn strftime_now(format: &str) -> Result<String, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(format_time(secs, format))
}

/// [`strftime_now`] at `secs` seconds after the Unix epoch.
fn format_time(secs: i64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = rlvr_core::calendar::civil_from_days(days);
    let (month, day) = (i64::from(month), i64::from(day));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize];
    let yday = before + day + i64::from(leap && month > 2);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(&weekday[..3]),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl TextCodec for HfTokenizer {
    fn encode(&self, text: &str) -> rlvr_core::Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| rlvr_core::CoreError::config("tokenizer", e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    fn decode(&self, ids: &[i64]) -> rlvr_core::Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| rlvr_core::CoreError::config("tokenizer", e))
    }

    fn stop_tokens(&self) -> Vec<i64> {
        self.eos.clone()
    }

    fn pad_token(&self) -> i64 {
        self.pad
    }

    /// Through the chat template for chat models: the whole conversation, system prompt
    /// included, when the data has one, else the prompt as one user turn.
    fn render_prompt(&self, problem: &rlvr_core::Problem) -> rlvr_core::Result<String> {
        if !self.chat {
            return Ok(problem.prompt.clone());
        }
        let messages: Vec<Message> = if problem.messages.is_empty() {
            vec![Message {
                role: "user".into(),
                content: problem.prompt.clone(),
            }]
        } else {
            problem
                .messages
                .iter()
                .map(|(role, content)| Message {
                    role: role.clone(),
                    content: content.clone(),
                })
                .collect()
        };
        self.apply_chat_template(&messages, true)
            .map_err(|e| rlvr_core::CoreError::Input(e.to_string()))
    }
}

/// A character-level tokenizer over a fixed alphabet, with `<pad>` = 0 and `<eos>` = 1.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CharTokenizer {
    alphabet: Vec<char>,
}

impl CharTokenizer {
    /// Id of the padding token.
    pub const PAD: i64 = 0;
    /// Id of the end-of-sequence token.
    pub const EOS: i64 = 1;

    /// A tokenizer over `alphabet` (duplicates removed, order kept).
    pub fn new(alphabet: &str) -> CharTokenizer {
        let mut seen = Vec::new();
        for c in alphabet.chars() {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        CharTokenizer { alphabet: seen }
    }

    /// Vocabulary size including the two specials.
    pub fn vocab_size(&self) -> i64 {
        self.alphabet.len() as i64 + 2
    }
}

impl TextCodec for CharTokenizer {
    fn encode(&self, text: &str) -> rlvr_core::Result<Vec<i64>> {
        text.chars()
            .map(|c| {
                self.alphabet
                    .iter()
                    .position(|a| *a == c)
                    .map(|p| p as i64 + 2)
                    .ok_or_else(|| {
                        rlvr_core::CoreError::config(
                            "tokenizer",
                            format!(
                                "character {c:?} is not in the alphabet {:?}",
                                self.alphabet.iter().collect::<String>()
                            ),
                        )
                    })
            })
            .collect()
    }

    fn decode(&self, ids: &[i64]) -> rlvr_core::Result<String> {
        Ok(ids
            .iter()
            .filter(|&&i| i >= 2)
            .filter_map(|&i| self.alphabet.get((i - 2) as usize))
            .collect())
    }

    fn stop_tokens(&self) -> Vec<i64> {
        vec![Self::EOS]
    }

    fn pad_token(&self) -> i64 {
        Self::PAD
    }
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn dates_format_as_strftime_does() {
        // 2026-12-05 01:53:46 UTC, a Saturday (`date -u -d @1796435626`).
        let t = 1_796_435_626;
        assert_eq!(format_time(t, "%d %b %Y"), "05 Dec 2026");
        assert_eq!(
            format_time(t, "%A %e %B %y, %H:%M:%S, day %j, 100%%"),
            "Saturday  5 December 26, 01:53:46, day 339, 100%"
        );
        assert_eq!(format_time(0, "%Y-%m-%d %a"), "1970-01-01 Thu");
        assert_eq!(format_time(951_782_400, "%Y-%m-%d %j"), "2000-02-29 060");
    }
}
