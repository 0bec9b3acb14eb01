//! Chat templates as published templates write them: Python string methods (`startswith`,
//! `strip`, `split`, `endswith`, `lstrip`, `replace`), transformers' `raise_exception` and
//! `strftime_now` (Qwen3's and Llama 3.x's templates use all of these).

use rlvr_core::{Problem, TextCodec};
use rlvr_models::tokenizer::HfTokenizer;
use std::path::PathBuf;

/// A tokenizer folder with the qwen2-tiny fixture's tokenizer and `template`.
fn tokenizer_with(dir: &std::path::Path, template: &str) -> HfTokenizer {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2-tiny");
    std::fs::copy(fixture.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let cfg = serde_json::json!({ "chat_template": template, "eos_token": "<|im_end|>" });
    std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
    HfTokenizer::from_dir(dir).unwrap()
}

fn problem(messages: &[(&str, &str)]) -> Problem {
    Problem {
        id: "p".into(),
        prompt: messages.last().map(|m| m.1.to_string()).unwrap_or_default(),
        ground_truth: String::new(),
        data_source: String::new(),
        messages: messages
            .iter()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect(),
        extra_info: None,
    }
}

const TEMPLATE: &str = "\
{%- if messages[0].role == 'system' and messages[0].content.startswith('Date') %}[dated]{% endif %}\
{%- if messages | length > 3 %}{{ raise_exception('at most 3 turns, got ' ~ messages | length) }}{% endif %}\
{%- for m in messages %}\
<{{ m.role }}>{{ m.content.strip() }}#{{ m.content.strip().split(' ') | length }}\
{%- if m.content.endswith('?') %}(q){% endif %}{{ m.content.lstrip().replace('a', 'A') | length }}\
{%- endfor %}\
{%- if add_generation_prompt %}<assistant>{{ strftime_now('%Y') | length }}{% endif %}";

#[test]
fn python_string_methods_and_transformers_functions_render() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer_with(tmp.path(), TEMPLATE);
    let text = tok
        .render_prompt(&problem(&[
            ("system", "Date: today  "),
            ("user", "  what is a sum?"),
        ]))
        .unwrap();
    // What jinja2 3.1.6 (the engine of transformers' apply_chat_template) renders for the same
    // template and messages, with strftime_now as transformers defines it.
    assert_eq!(
        text,
        "[dated]<system>Date: today#213<user>what is a sum?#4(q)14<assistant>4"
    );
}

#[test]
fn raise_exception_fails_with_the_templates_message() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = tokenizer_with(tmp.path(), TEMPLATE);
    let e = tok
        .render_prompt(&problem(&[
            ("user", "a"),
            ("assistant", "b"),
            ("user", "c"),
            ("user", "d"),
        ]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 3 turns, got 4"), "{e}");
}
