//! Synthetic tasks (determinism, verified solutions), registered verifiers, batch scoring, and
//! malformed dataset rows.

use rlvr_core::{Outcome, Split, Task, TaskConfig};
use rlvr_rewards::data::{self, DataError, OnBadRow};
use rlvr_rewards::tasks::countdown::{Countdown, CountdownConfig};
use rlvr_rewards::tasks::toy_tree::{ToyTree, REWARDING};
use rlvr_rewards::verifiers::{for_data_source, score_batch};

#[test]
fn countdown_is_deterministic_and_every_solution_verifies() {
    let cfg = CountdownConfig::default();
    let a = Countdown::new(&cfg).unwrap();
    let b = Countdown::new(&cfg).unwrap();
    assert_eq!(
        a.problems(Split::Train).unwrap(),
        b.problems(Split::Train).unwrap(),
        "same seed, same problems"
    );
    let other = Countdown::new(&CountdownConfig {
        seed: 1,
        ..cfg.clone()
    })
    .unwrap();
    assert_ne!(
        a.problems(Split::Train).unwrap(),
        other.problems(Split::Train).unwrap()
    );
    let train = a.problems(Split::Train).unwrap();
    let test = a.problems(Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (cfg.train_size, cfg.test_size));
    assert!(
        train.iter().all(|p| !test.contains(p)),
        "splits are disjoint"
    );
    let v = a.verifier();
    let mut several = 0;
    for p in train.iter().chain(&test) {
        let mut answers = std::collections::BTreeSet::new();
        for seed in 0..8 {
            let s = a.solution(p, seed).expect("a solution exists");
            assert_eq!(
                v.verify(&s, &p.ground_truth).outcome,
                Outcome::Correct,
                "{} -> {s}",
                p.prompt
            );
            answers.insert(s);
        }
        several += usize::from(answers.len() > 1);
    }
    assert!(
        several * 2 > train.len(),
        "most problems have several valid answers"
    );
    // Wrong answers: wrong value, wrong numbers, garbage.
    let p = &train[0];
    assert_eq!(v.verify("1+1", &p.ground_truth).outcome, Outcome::Incorrect);
    assert_eq!(v.verify("", &p.ground_truth).outcome, Outcome::NoAnswer);
    assert_eq!(v.verify("((", &p.ground_truth).outcome, Outcome::Incorrect);
}

#[test]
fn toy_tree_rewards_exactly_the_six_sequences() {
    let t = ToyTree;
    let p = &t.problems(Split::Train).unwrap()[0];
    let v = t.verifier();
    for s in REWARDING {
        assert_eq!(v.verify(s, &p.ground_truth).outcome, Outcome::Correct);
    }
    for s in ["AAA", "ACC", "DBB", "AC"] {
        assert_eq!(v.verify(s, &p.ground_truth).outcome, Outcome::Incorrect);
    }
    for seed in 0..12 {
        assert_eq!(
            v.verify(&t.solution(p, seed).unwrap(), &p.ground_truth)
                .outcome,
            Outcome::Correct
        );
    }
}

#[test]
fn tasks_and_verifiers_build_from_config() {
    rlvr_rewards::link_anchor();
    let task: Box<dyn TaskConfig> =
        toml::from_str("type = \"countdown\"\nnumbers = 2\ntrain_size = 20\ntest_size = 5\n")
            .unwrap();
    assert_eq!(
        task.build().unwrap().problems(Split::Test).unwrap().len(),
        5
    );
    let bad: Box<dyn TaskConfig> = toml::from_str("type = \"countdown\"\nnumbers = 7\n").unwrap();
    assert!(bad.build().is_err());
    for name in ["math", "gsm8k", "exact", "toy-tree", "countdown"] {
        let cfg: Box<dyn rlvr_core::VerifierConfig> =
            toml::from_str(&format!("type = \"{name}\"")).unwrap();
        cfg.build().unwrap();
    }
}

#[test]
fn routing_and_parallel_batch_scoring() {
    let gsm = for_data_source("openai/gsm8k");
    assert_eq!(
        gsm.verify("so 3 + 4 = 7\n#### 7", "#### 7").outcome,
        Outcome::Correct
    );
    let math = for_data_source("TianHongZXY/MATH");
    let pairs: Vec<(String, String)> = (0..200)
        .map(|i| (format!("\\boxed{{{}}}", i % 7), format!("{}", i % 5)))
        .collect();
    let verdicts = score_batch(math.as_ref(), &pairs);
    assert_eq!(verdicts.len(), pairs.len());
    for ((r, g), v) in pairs.iter().zip(&verdicts) {
        assert_eq!(
            v,
            &math.verify(r, g),
            "batch scoring keeps order and results"
        );
    }
}

#[test]
fn malformed_rows_name_the_row_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    // A byte-order mark, then a good row, a row without ground truth, a non-string prompt, an
    // empty prompt and an empty ground truth; rows are named by their 1-based line.
    std::fs::write(&path, "\u{feff}{\"prompt\": \"1+1?\", \"ground_truth\": \"2\"}\n{\"prompt\": \"2+2?\"}\n{\"prompt\": 3, \"answer\": \"4\"}\n{\"prompt\": \" \", \"answer\": \"4\"}\n{\"prompt\": \"3+3?\", \"answer\": \"\"}\n").unwrap();
    let err = data::read(&path, OnBadRow::Fail).unwrap_err();
    match &err {
        DataError::Row { row, field, .. } => {
            assert_eq!((*row, field.as_str()), (2, "ground_truth"))
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bad.jsonl: line 2") && msg.contains("ground_truth"),
        "{msg}"
    );
    let ds = data::read(&path, OnBadRow::Skip).unwrap();
    assert_eq!((ds.records.len(), ds.skipped), (1, 4));
    assert_eq!(ds.records[0].prompt[0].content, "1+1?", "BOM stripped");
    // A parquet file whose `prompt` column is not a list of messages.
    let pq = dir.path().join("bad.parquet");
    write_bad_parquet(&pq);
    let err = data::read(&pq, OnBadRow::Fail).unwrap_err().to_string();
    assert!(err.contains("row 0") && err.contains("prompt"), "{err}");
    let missing = data::read(&dir.path().join("nope.parquet"), OnBadRow::Fail)
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope.parquet"));
}

fn write_bad_parquet(path: &std::path::Path) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int32Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    let schema = std::sync::Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY data_source (UTF8); REQUIRED INT32 prompt; }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer = SerializedFileWriter::new(
        file,
        schema,
        std::sync::Arc::new(WriterProperties::builder().build()),
    )
    .unwrap();
    let mut rg = writer.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&[ByteArray::from("x")], None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<Int32Type>()
        .write_batch(&[5], None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn dataset_tasks_apply_a_plain_text_template_and_route_verifiers() {
    use rlvr_rewards::data::task::DatasetTask;
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/amc23_test.parquet");
    let ds = data::read(&path, OnBadRow::Fail).unwrap();
    let task = DatasetTask::with_template(&ds.records[..30], &ds.records[30..], "Q: {prompt}\nA:");
    let test = task.problems(Split::Test).unwrap();
    assert_eq!(test.len(), 10);
    assert!(test[0].prompt.starts_with("Q: ") && test[0].prompt.ends_with("\nA:"));
    // Routing by data_source: a GSM8K source gets the gsm8k verifier (`####`), others math.
    let v = task.verifier();
    let item = |response: &'static str, truth: &'static str, source: &'static str| {
        rlvr_core::RewardInput {
            prompt: "",
            response,
            ground_truth: truth,
            data_source: source,
            id: "row-1",
            extra_info: None,
        }
    };
    let verdicts = v
        .verify_batch(&[
            item("so \\boxed{\\frac12}", "0.5", "TianHongZXY/amc23"),
            item("\\boxed{-123456}", "0.5", "TianHongZXY/amc23"),
            item("#### 7\nThe answer is 9.", "7", "openai/gsm8k"),
            item("#### 8", "7", "openai/gsm8k"),
        ])
        .unwrap();
    let outcomes: Vec<Outcome> = verdicts.iter().map(|v| v.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Outcome::Correct,
            Outcome::Incorrect,
            Outcome::Correct,
            Outcome::Incorrect
        ]
    );
    assert_eq!(
        verdicts[2].extracted.as_deref(),
        Some("7"),
        "gsm8k's `####` rule"
    );
}

#[test]
fn jsonl_numbers_keep_their_literal_text_and_bad_files_say_where() {
    use rlvr_rewards::data::{read, OnBadRow};
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("n.jsonl");
    std::fs::write(
        &path,
        "{\"prompt\": \"a\", \"ground_truth\": 123456789012345678901}\n\
         {\"prompt\": \"b\", \"answer\": 0.10}\r\n\
         {\"prompt\": \"c\", \"ground_truth\": -2.5e3}\n",
    )
    .unwrap();
    let ds = read(&path, OnBadRow::Fail).unwrap();
    let gts: Vec<&str> = ds.records.iter().map(|r| r.ground_truth.as_str()).collect();
    assert_eq!(gts, ["123456789012345678901", "0.10", "-2.5e3"]);

    let bad = tmp.path().join("latin1.jsonl");
    let mut bytes = b"{\"prompt\": \"a\", \"ground_truth\": \"1\"}\n".to_vec();
    bytes.extend(b"{\"prompt\": \"caf\xe9\", \"ground_truth\": \"2\"}\n");
    std::fs::write(&bad, bytes).unwrap();
    let e = read(&bad, OnBadRow::Fail).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("UTF-8"), "{e}");

    let array = tmp.path().join("array.jsonl");
    std::fs::write(&array, "[{\"prompt\": \"a\", \"ground_truth\": \"1\"}]\n").unwrap();
    let e = read(&array, OnBadRow::Fail).unwrap_err().to_string();
    assert!(
        e.contains("JSON array") && e.contains("one JSON object per line"),
        "{e}"
    );
}

#[test]
fn verl_jsonl_reads_nested_answers_extra_info_and_named_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("verl.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"data_source": "s", "prompt": [{"role": "user", "content": "Q1"}], "reward_model": {"style": "rule", "ground_truth": "4"}, "extra_info": {"index": 0, "tests": [1, 2]}}"#,
            "\n",
            r#"{"data_source": "s", "prompt": [{"role": "user", "content": "Q2"}], "reward_model": {"ground_truth": {"target": "7"}}, "extra_info": null}"#,
            "\n",
        ),
    )
    .unwrap();
    let ds = data::read(&path, OnBadRow::Fail).unwrap();
    assert_eq!(ds.records[0].ground_truth, "4");
    assert_eq!(ds.records[1].ground_truth, "7");
    assert_eq!(
        ds.records[0].extra_info,
        Some(serde_json::json!({"index": 0, "tests": [1, 2]}))
    );
    assert_eq!(ds.records[1].extra_info, None);
    // Other columns by name: data.prompt_key / data.answer_key.
    let other = dir.path().join("other.jsonl");
    std::fs::write(
        &other,
        concat!(r#"{"question": "Q", "meta": {"final": 12}}"#, "\n"),
    )
    .unwrap();
    let columns = data::Columns {
        prompt: "question".into(),
        answer: "meta.final".into(),
    };
    let ds = data::read_columns(&other, OnBadRow::Fail, &columns).unwrap();
    assert_eq!(ds.records[0].user_prompt(), "Q");
    assert_eq!(ds.records[0].ground_truth, "12");
    let e = data::read(&other, OnBadRow::Fail).unwrap_err().to_string();
    assert!(e.contains("prompt_key"), "{e}");
    // The verl parquet files' extra_info reaches the problems.
    let amc =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/amc23_test.parquet");
    let ds = data::read(&amc, OnBadRow::Fail).unwrap();
    let info = ds.records[3]
        .extra_info
        .clone()
        .expect("extra_info of a verl parquet row");
    assert!(info.get("index").is_some(), "{info}");
}

#[test]
fn a_verl_compute_score_file_runs_unchanged_with_each_rows_extra_info() {
    use rlvr_core::VerifierConfig;
    use rlvr_rewards::programs::PythonFunctionConfig;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reward.py");
    std::fs::write(
        &file,
        "def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n    \
         print('a log line goes to stderr')\n    \
         bonus = extra_info['bonus']\n    \
         return {'score': bonus + (solution_str == ground_truth), 'seen': data_source}\n\
         def helper():\n    pass\n",
    )
    .unwrap();
    let cfg = PythonFunctionConfig {
        path: file.display().to_string(),
        ..PythonFunctionConfig::default()
    };
    let v = cfg.build().unwrap();
    let info = [
        serde_json::json!({"bonus": 0.25}),
        serde_json::json!({"bonus": 0.5}),
    ];
    let item = |response: &'static str, extra: &'static serde_json::Value| rlvr_core::RewardInput {
        prompt: "p",
        response,
        ground_truth: "42",
        data_source: "src",
        id: "row-1",
        extra_info: Some(extra),
    };
    let info: &'static [serde_json::Value; 2] = Box::leak(Box::new(info));
    let verdicts = v
        .verify_batch(&[item("42", &info[0]), item("41", &info[1])])
        .unwrap();
    assert_eq!(verdicts[0].score, 1.25);
    assert_eq!(verdicts[1].score, 0.5);
    // A file without the function: the error names the functions it has.
    let cfg = PythonFunctionConfig {
        path: file.display().to_string(),
        function: "score_fn".into(),
        ..PythonFunctionConfig::default()
    };
    let v = cfg.build().unwrap();
    let e = v
        .verify_batch(&[item("42", &info[0])])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("defines no function `score_fn`") && e.contains("helper"),
        "{e}"
    );
    let missing = PythonFunctionConfig {
        path: dir.path().join("nope.py").display().to_string(),
        ..PythonFunctionConfig::default()
    };
    assert!(missing.build().is_err());
}
