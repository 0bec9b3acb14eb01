//! The prompt a chat model sees keeps a verl row's whole conversation: its system prompt and
//! earlier turns, not only the last user message.

use rlvr_core::{Split, Task};
use rlvr_models::tokenizer::HfTokenizer;
use rlvr_rewards::data::{read, task::DatasetTask, OnBadRow};
use rlvr_train::data::prompt_text;

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
    let text = prompt_text(&problems[0], Some(&tok)).unwrap();
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
    // Plain-text models (no chat template) see the templated last user message.
    assert_eq!(prompt_text(&problems[0], None).unwrap(), "Q: And 3+3?");
    // A single message stays a single user turn.
    let one = prompt_text(&problems[1], Some(&tok)).unwrap();
    assert!(
        one.contains("<|im_start|>user\nQ: What is 5+5?") && !one.contains("system"),
        "{one}"
    );
}
