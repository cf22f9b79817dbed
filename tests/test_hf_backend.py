"""The hf backend on a tiny random-weight Llama built from a config (no download).

Every number is checked against a plain, unbatched computation with torch: the packed rows,
shared contexts, left padding and rolling windows must not change a single log-probability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evalharness.backends.hf import HFBackend, rolling_windows  # noqa: E402
from evalharness.types import GenParams, Message, Request  # noqa: E402

CORPUS = [
    "Question: What color is the sky? Answer: blue",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "One two three four five six seven eight nine ten.",
    "Water boils at one hundred degrees.",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    # Sharper logits than a fresh init, so greedy choices and long generations are non-trivial.
    with torch.no_grad():
        model.lm_head.weight.mul_(30.0)
    model.save_pretrained(folder)
    return folder


def _naive_loglikelihood(backend: HFBackend, context: str, continuation: str) -> tuple[float, bool]:
    """Unbatched reference: one full forward of context+continuation, lm-eval's token split."""
    ctx, cont = backend._encode_pair(context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    total, greedy = 0.0, True
    for j, tok in enumerate(cont):
        pos = len(ctx) + j - 1
        total += float(logp[pos, tok])
        greedy &= int(logp[pos].argmax()) == tok
    return total, greedy


def _mc_requests() -> list[Request]:
    contexts = ["Question: What color is the sky?\nAnswer:", "Paris is the capital of", "One two three"]
    conts = [[" blue", " green", " the sky is blue today"], [" France.", " Germany.", " fox"], [" four", " five six"]]
    return [Request(kind="loglikelihood", prompt=c, continuation=x) for c, xs in zip(contexts, conts, strict=True) for x in xs]


def test_loglikelihood_matches_unbatched_forward(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), batch_size=8)
    requests = _mc_requests()
    responses = backend.loglikelihood(requests)
    for req, resp in zip(requests, responses, strict=True):
        want, greedy = _naive_loglikelihood(backend, req.prompt or "", req.continuation)
        assert resp.logprob == pytest.approx(want, abs=1e-4)
        assert resp.is_greedy == greedy
        assert resp.error is None


def test_scores_do_not_depend_on_batch_size(tiny_model: Path) -> None:
    requests = [*_mc_requests(), Request(kind="loglikelihood", prompt="", continuation="Water boils")]
    one = HFBackend(pretrained=str(tiny_model), batch_size=1).loglikelihood(requests)
    many = HFBackend(pretrained=str(tiny_model), batch_size=16).loglikelihood(requests)
    ungrouped = HFBackend(pretrained=str(tiny_model), batch_size=3, group_contexts=False).loglikelihood(requests)
    for a, b, c in zip(one, many, ungrouped, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.logprob == pytest.approx(c.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy == c.is_greedy


def test_empty_context_is_conditioned_on_bos(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model))
    resp = backend.loglikelihood([Request(kind="loglikelihood", prompt="", continuation="The quick brown fox")])[0]
    backend._load()
    tokens = backend._encode("The quick brown fox", add_special_tokens=False)
    ids = torch.tensor([[backend.tokenizer.bos_token_id, *tokens]])
    with torch.inference_mode():
        logp = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), dim=-1)
    want = sum(float(logp[i, t]) for i, t in enumerate(tokens))
    assert resp.logprob == pytest.approx(want, abs=1e-4)


def _naive_rolling(backend: HFBackend, text: str, context_len: int = 1) -> float:
    """lm-eval's rolling windows scored one by one, without packing or batching."""
    tokens = backend._encode(text)
    total = 0.0
    for ctx, cont in rolling_windows(tokens, backend._prefix_id, backend.max_length, context_len):
        ids = torch.tensor([ctx + cont])[:, -(backend.max_length + 1):][:, :-1]
        with torch.inference_mode():
            logp = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), dim=-1)
        first = ids.shape[1] - len(cont)
        total += sum(float(logp[first + j, t]) for j, t in enumerate(cont))
    return total


def test_rolling_loglikelihood_over_several_windows(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), batch_size=4)
    long_doc = " ".join(CORPUS * 3)  # longer than max_position_embeddings (64 tokens): several windows
    docs = [long_doc, CORPUS[1]]
    responses = backend.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=d) for d in docs])
    assert backend.max_length == 64
    assert len(backend._encode(long_doc)) > 2 * backend.max_length
    for doc, resp in zip(docs, responses, strict=True):
        assert resp.n_tokens == len(backend._encode(doc))
        assert resp.logprob == pytest.approx(_naive_rolling(backend, doc), abs=1e-3)


def test_rolling_loglikelihood_with_stride_overlaps_windows(tiny_model: Path) -> None:
    doc = " ".join(CORPUS * 3)
    disjoint = HFBackend(pretrained=str(tiny_model)).loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=doc)])[0]
    backend = HFBackend(pretrained=str(tiny_model), stride=16, batch_size=3)
    strided = backend.loglikelihood_rolling([Request(kind="loglikelihood_rolling", prompt=doc)])[0]
    # Each window scores 16 new tokens with up to 64 tokens of context (48 of them overlapping).
    assert strided.logprob == pytest.approx(_naive_rolling(backend, doc, context_len=64 - 16 + 1), abs=1e-3)
    assert strided.n_tokens == disjoint.n_tokens
    assert strided.logprob != pytest.approx(disjoint.logprob, abs=1e-3)
    windows = list(rolling_windows(list(range(200)), prefix=1, max_len=64, context_len=64 - 16 + 1))
    assert all(len(cont) <= 16 for _, cont in windows[1:])


def test_rolling_windows_cover_every_token_once() -> None:
    tokens = list(range(100, 237))
    windows = list(rolling_windows(tokens, prefix=1, max_len=16, context_len=1))
    scored = [t for _, cont in windows for t in cont]
    assert scored == tokens
    assert all(len(ctx) + len(cont) <= 17 for ctx, cont in windows)


def _reference_greedy(backend: HFBackend, prompt: str, max_new: int) -> list[int]:
    ids = torch.tensor([backend._encode(prompt)])
    with torch.inference_mode():
        out = backend.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new, do_sample=False,
            pad_token_id=backend._pad_id, eos_token_id=None,
        )
    return [int(t) for t in out[0, ids.shape[1]:]]


def test_batched_greedy_generation_equals_unbatched_transformers(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), batch_size=4)
    prompts = ["Paris is", "The quick brown fox jumps over", "One", "Question: What color is the sky? Answer:"]
    gen = GenParams(max_tokens=12)
    responses = backend.generate([Request(kind="generate", prompt=p, gen=gen) for p in prompts])
    backend._eos_ids = set()  # the reference ignores EOS too, so compare full 12-token runs
    for p, resp in zip(prompts, responses, strict=True):
        want = _reference_greedy(backend, p, 12)
        eos = backend.tokenizer.eos_token_id
        if eos in want:
            want = want[: want.index(eos)]
        assert resp.text == backend.tokenizer.decode(want, skip_special_tokens=True)
        assert resp.completion_tokens >= 1


def test_stop_sequences_cut_the_output(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), batch_size=2)
    free = backend.generate([Request(kind="generate", prompt="Paris is", gen=GenParams(max_tokens=16))])[0].text
    assert free
    stop = free.strip()[:2]
    cut = backend.generate([Request(kind="generate", prompt="Paris is", gen=GenParams(max_tokens=16, stop=(stop,)))])[0]
    assert stop not in (cut.text or "")
    assert free.startswith(cut.text or "")


def test_sampling_is_seeded_and_repeats_differ(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), batch_size=4)
    gen = GenParams(max_tokens=10, temperature=1.5, seed=7)
    reqs = [Request(kind="generate", prompt="The quick", gen=gen, repeat=r) for r in range(4)]
    first = [r.text for r in backend.generate(reqs)]
    again = [r.text for r in HFBackend(pretrained=str(tiny_model), batch_size=1).generate(reqs)]
    assert first == again
    assert len(set(first)) > 1


def test_chat_messages_use_the_models_template(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model))
    assert backend.is_chat is True
    req = Request(kind="loglikelihood", messages=(Message("user", "Hello"),), continuation=" blue")
    backend._load()
    assert backend._text(req) == "<user>Hello\n<assistant>"


def test_identity_does_not_load_the_model(tiny_model: Path) -> None:
    backend = HFBackend(pretrained=str(tiny_model), dtype="float32")
    ident: dict[str, Any] = backend.identity()
    assert backend.model is None
    assert ident["dtype"] == "float32" and "config.json" in ident["fingerprint"]["files"]
    assert HFBackend(pretrained=str(tiny_model), batch_size=1).identity() == ident  # batch size: same outputs


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    from evalharness.errors import BackendError

    with pytest.raises(BackendError, match="does not exist"):
        HFBackend(pretrained=str(tmp_path / "nope"))


# ---- few-shot prefix reuse (issue 20) -------------------------------------------------------------

SHARED = "Paris is the capital of France. Berlin is the capital of Germany.\n"  # 28 tokens


def _prefixed_requests() -> list[Request]:
    """Four questions after one shared block, several choices each (some multi-token), within max_length 64."""
    questions = ["Question: What color is the sky? Answer:", "One two three", "The quick brown", "Water boils at"]
    choices = [" blue", " four", " fox jumps", " one hundred"]
    return [Request(kind="loglikelihood", prompt=SHARED + q, continuation=c) for q in questions for c in choices]


def test_shared_prefix_scores_equal_the_unshared_path(tiny_model: Path) -> None:
    requests = _prefixed_requests()
    plain = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_reuse=False).loglikelihood(requests)
    backend = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_min_tokens=8)
    shared = backend.loglikelihood(requests)
    assert len(backend.prefixes) == 1  # the block was detected from the tokens and computed once
    [entry] = backend.prefixes._entries.values()
    assert len(entry.tokens) >= len(backend._encode(SHARED)) - 1
    for a, b in zip(plain, shared, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy and b.error is None
    ran_plain, ran_shared = sum(r.model_tokens or 0 for r in plain), sum(r.model_tokens or 0 for r in shared)
    assert ran_shared + 2 * len(entry.tokens) < ran_plain  # the block is run once, not four times
    # A second call finds the block in the prefix cache and runs only the suffixes.
    again = backend.loglikelihood(requests)
    assert backend.prefixes.hits >= 1 and sum(r.model_tokens or 0 for r in again) == ran_shared - len(entry.tokens)
    assert [r.logprob for r in again] == pytest.approx([r.logprob for r in shared], abs=1e-5)


def test_shared_prefix_scores_do_not_depend_on_batch_size(tiny_model: Path) -> None:
    requests = [*_prefixed_requests(), *_mc_requests()]  # shared and unshared requests in one call
    backends = [HFBackend(pretrained=str(tiny_model), batch_size=n, prefix_min_tokens=8) for n in (1, 2, 16)]
    runs = [b.loglikelihood(requests) for b in backends]
    assert all(len(b.prefixes) == 1 for b in backends)
    ungrouped = HFBackend(pretrained=str(tiny_model), batch_size=4, prefix_min_tokens=8,
                          group_contexts=False).loglikelihood(requests)
    for req, *answers in zip(requests, *runs, ungrouped, strict=True):
        want, greedy = _naive_loglikelihood(backends[0], req.prompt or "", req.continuation)
        for got in answers:
            assert got.logprob == pytest.approx(want, abs=1e-4)
            assert got.is_greedy == greedy


def test_shared_prefix_greedy_generation_is_unchanged(tiny_model: Path) -> None:
    prompts = [SHARED + p for p in ("Paris is", "The quick brown fox jumps over", "One", "Question: What color is")]
    requests = [Request(kind="generate", prompt=p, gen=GenParams(max_tokens=12)) for p in prompts]
    plain = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_reuse=False).generate(requests)
    backend = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_min_tokens=8)
    shared = backend.generate(requests)
    assert len(backend.prefixes) == 1
    assert [r.text for r in shared] == [r.text for r in plain]
    assert [r.completion_tokens for r in shared] == [r.completion_tokens for r in plain]
    assert sum(r.model_tokens or 0 for r in shared) < sum(r.model_tokens or 0 for r in plain)
    backend._eos_ids = set()  # against transformers' own greedy loop, full 12-token runs
    for p, resp in zip(prompts, backend.generate(requests), strict=True):
        assert resp.text == backend.tokenizer.decode(_reference_greedy(backend, p, 12), skip_special_tokens=True)


def test_unsupported_cache_type_falls_back_to_the_unshared_path(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalharness.backends import prefix_cache

    monkeypatch.setattr(prefix_cache, "capture", lambda cache, length: None)  # e.g. a sliding-window cache
    requests = _prefixed_requests()
    backend = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_min_tokens=8)
    got = backend.loglikelihood(requests)
    assert backend.prefix_reuse is False and len(backend.prefixes) == 0
    plain = HFBackend(pretrained=str(tiny_model), batch_size=3, prefix_reuse=False).loglikelihood(requests)
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in plain], abs=1e-6)
    gen = [Request(kind="generate", prompt=SHARED + "Paris is", gen=GenParams(max_tokens=5))] * 2
    assert [r.text for r in backend.generate(gen)] == [r.text for r in
                                                      HFBackend(pretrained=str(tiny_model), prefix_reuse=False).generate(gen)]


def test_prefix_groups_minimise_tokens_computed() -> None:
    from evalharness.backends.prefix_cache import plan_groups

    block, other = list(range(100, 180)), list(range(300, 380))
    seqs = [[*block, 1, 2, 3], [*other, 5], [*block, 4, 5], [7, 8, 9], [*other, 6, 7], [*block, 9]]
    groups = plan_groups(seqs, [len(s) - 1 for s in seqs], min_len=64)
    assert sorted((shared, sorted(idx)) for shared, idx in groups) == [(0, [3]), (80, [0, 2, 5]), (80, [1, 4])]
    # A prefix never swallows a whole sequence (the caller's limit), nor is shorter than min_len.
    assert plan_groups([block, block], [79, 79], min_len=64) == [(79, [0, 1])]
    assert all(shared == 0 for shared, _ in plan_groups(seqs, [len(s) - 1 for s in seqs], min_len=90))


def test_prefix_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    from evalharness.backends.prefix_cache import Prefix, PrefixCache

    cache = PrefixCache(max_bytes=250)
    for n in range(3):
        cache.put(Prefix(tuple(range(n, n + 10)), [], 100))
    assert len(cache) == 2 and cache.nbytes == 200 and cache.evicted == 1  # (0..9) went first
    assert cache.longest(list(range(1, 30)), 5, 20) is not None  # (1..10) is used again ...
    cache.put(Prefix(tuple(range(7, 17)), [], 100))
    assert cache.longest(list(range(1, 30)), 5, 20) is not None  # ... so (2..11) was evicted instead
    assert cache.longest(list(range(2, 30)), 5, 20) is None
    assert cache.longest(list(range(1, 30)), 5, 9) is None  # too long for the caller's limit
    cache.put(Prefix((1, 2), [], 1000))  # larger than the whole budget: not kept
    assert len(cache) == 2
