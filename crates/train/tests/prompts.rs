//! The prompt a chat model sees keeps a verl row's whole conversation: its system prompt and
//! earlier turns, not only the last user message.

use rlvr_core::{Split, Task, TextCodec};
use rlvr_models::tokenizer::HfTokenizer;
use rlvr_rewards::data::{read, task::DatasetTask, OnBadRow};

#[test]
fn system_prompts_and_earlier_turns_reach_the_chat_template() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("chat.jsonl");
    let row = serde_json::json!({
        "prompt": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Quatre."},
            {"role": "user", "content": "And 3+3?"}
        ],
        "ground_truth": "6",
        "data_source": "chat"
    });
    let single = serde_json::json!({"prompt": "What is 5+5?", "ground_truth": "10"});
    std::fs::write(&path, format!("{row}\n{single}\n")).unwrap();
    let ds = read(&path, OnBadRow::Fail).unwrap();
    let task = DatasetTask::with_template(&ds.records, &[], "Q: {prompt}");
    let problems = task.problems(Split::Train).unwrap();
    let tok = HfTokenizer::from_dir(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../models/tests/fixtures/qwen2-tiny"),
    )
    .unwrap();
    assert!(
        tok.is_chat(),
        "the fixture has a tokenizer_config.json with a chat template"
    );
    let text = tok.render_prompt(&problems[0]).unwrap();
    let order = [
        "<|im_start|>system\nAnswer in French.",
        "<|im_start|>user\nWhat is 2+2?",
        "<|im_start|>assistant\nQuatre.",
        "<|im_start|>user\nQ: And 3+3?",
    ];
    let mut at = 0;
    for part in order {
        let found = text[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} in order in {text:?}"));
        at += found + part.len();
    }
    // A single message stays a single user turn.
    let one = tok.render_prompt(&problems[1]).unwrap();
    assert!(
        one.contains("<|im_start|>user\nQ: What is 5+5?") && !one.contains("system"),
        "{one}"
    );
    // Plain-text models (no chat template) see the templated last user message.
    let plain = tok.with_chat(false);
    assert_eq!(plain.render_prompt(&problems[0]).unwrap(), "Q: And 3+3?");
}
