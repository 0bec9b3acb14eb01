//! rlvr's tokenizer against transformers' `AutoTokenizer` on the fixture models: the ids of plain
//! texts (digits, math, special tokens written in the text, whitespace, accents) and of chat
//! conversations rendered by the chat template, as transformers produced them
//! (`fixtures/<model>/tokenizer_reference.json`, made by `fixtures/make_tokenizer_reference.py`).

use rlvr_core::TextCodec;
use rlvr_models::tokenizer::{HfTokenizer, Message};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn prompt_ids_equal_transformers() {
    for name in ["qwen2-tiny", "qwen3-tiny", "llama-tiny"] {
        let dir = fixture(name);
        let reference: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("tokenizer_reference.json")).unwrap(),
        )
        .unwrap();
        let tok = HfTokenizer::from_dir(&dir).unwrap();
        let ids = |v: &serde_json::Value| -> Vec<i64> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        };
        for t in reference["texts"].as_array().unwrap() {
            let text = t["text"].as_str().unwrap();
            assert_eq!(
                tok.encode(text).unwrap(),
                ids(&t["ids"]),
                "{name}: {text:?}"
            );
        }
        for c in reference["chats"].as_array().unwrap() {
            let messages: Vec<Message> = c["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| Message {
                    role: m["role"].as_str().unwrap().into(),
                    content: m["content"].as_str().unwrap().into(),
                })
                .collect();
            let rendered = tok.apply_chat_template(&messages, true).unwrap();
            assert_eq!(
                rendered,
                c["rendered"].as_str().unwrap(),
                "{name}: rendering"
            );
            assert_eq!(
                tok.encode(&rendered).unwrap(),
                ids(&c["ids"]),
                "{name}: chat ids"
            );
        }
    }
}

#[test]
fn a_chat_template_in_chat_template_jinja_is_used() {
    // transformers ≥ 4.43 saves the template as chat_template.jinja, not in tokenizer_config.json.
    let src = fixture("qwen2-tiny");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("tokenizer_config.json")).unwrap())
            .unwrap();
    let template = cfg["chat_template"].as_str().unwrap().to_string();
    cfg.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(dir.path().join("tokenizer_config.json"), cfg.to_string()).unwrap();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        format!("[jinja]{template}"),
    )
    .unwrap();
    let tok = HfTokenizer::from_dir(dir.path()).unwrap();
    let messages = [Message {
        role: "user".into(),
        content: "hi".into(),
    }];
    let rendered = tok.apply_chat_template(&messages, true).unwrap();
    assert!(rendered.starts_with("[jinja]<|im_start|>"), "{rendered}");
}
