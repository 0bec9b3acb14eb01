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
    chat_template: Option<String>,
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

impl HfTokenizer {
    /// Loads `tokenizer.json` and (if present) `tokenizer_config.json` from a model folder.
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
        let chat_template = cfg
            .get("chat_template")
            .and_then(|c| c.as_str())
            .map(str::to_string);
        Ok(HfTokenizer {
            inner,
            eos,
            pad,
            chat_template,
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
        let Some(template) = &self.chat_template else {
            return Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"));
        };
        let mut env = minijinja::Environment::new();
        env.add_template("chat", template)
            .map_err(|e| ModelError::Tokenizer(format!("chat template: {e}")))?;
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
