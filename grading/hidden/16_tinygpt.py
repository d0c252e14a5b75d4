# Hidden tests of module 16_tinygpt. tito puts each section back at the end of the
# graded cell with the same grade_id (see tito/hidden.py); students never get this file.

# %% grade_id: test-tokenizer
# Hidden: non-ASCII and astral vocabularies, code points beyond every vocabulary character, replacement of unknown
# characters after fit, the given order kept, empty text, out-of-range and negative ids, repeated characters.
greek_h = CharTokenizer("αβγ 🙂\n")
ids_h = greek_h.encode("γ🙂 α\nβ")
assert ids_h.tolist() == [2, 4, 3, 0, 5, 1] and greek_h.decode(ids_h) == "γ🙂 α\nβ"
assert greek_h.encode("").shape == (0,) and greek_h.encode("").dtype == np.int64 and greek_h.decode([]) == ""
for text_h in ("a", "αβ\U0001F680", "\t", "α" * 5 + "€"):
    try:
        greek_h.encode(text_h)
        raise AssertionError(f"{text_h!r} holds unknown characters")
    except UnknownCharacterError:
        pass
assert issubclass(UnknownCharacterError, ValueError)
rep_h = CharTokenizer(unknown="?").fit("abcab")
assert rep_h.chars == ("?", "a", "b", "c") and rep_h.encode("abz€?").tolist() == [1, 2, 0, 0, 0]
assert CharTokenizer("ba").encode("abba").tolist() == [1, 0, 0, 1], "the vocabulary order given is kept"
assert CharTokenizer("abc").decode(np.array([2.0, 0.0])) == "ca"
for bad_h in ([0, 3], [-1], [0, 1, -3]):
    try:
        CharTokenizer("abc").decode(bad_h)
        raise AssertionError(f"ids {bad_h} are outside the vocabulary")
    except ValueError:
        pass
for make_h in (lambda: CharTokenizer("abca"), lambda: CharTokenizer().fit("")):
    try:
        make_h()
        raise AssertionError("a repeated character or an empty text must be refused")
    except ValueError:
        pass

# %% grade_id: test-embedding
# Hidden: the gradient with a random upstream gradient (repeated ids, 3-D ids) against float64 central differences
# and an inline np.add.at; ids given as floats or a Tensor; float32 gradients; negative ids refused.
rng_h = np.random.default_rng(1602)
emb_h = Embedding(7, 3, dtype=np.float64, rng=rng_h)
ids_h = np.array([[[0, 3], [3, 6]], [[3, 0], [5, 5]]])
up_h = rng_h.standard_normal((2, 2, 2, 3))
out_h = emb_h(ids_h)
assert out_h.shape == (2, 2, 2, 3) and np.array_equal(out_h.data, emb_h.weight.data[ids_h])
out_h.backward(up_h)
ref_h = np.zeros((7, 3))
np.add.at(ref_h, ids_h.reshape(-1), up_h.reshape(-1, 3))
w0_h = emb_h.weight.data.copy()
num_h = np.zeros_like(w0_h)
for idx_h in np.ndindex(*w0_h.shape):
    for sign_h in (1.0, -1.0):
        emb_h.weight.data[...] = w0_h
        emb_h.weight.data[idx_h] += sign_h * 1e-6
        num_h[idx_h] += sign_h * (emb_h(ids_h).data * up_h).sum() / 2e-6
emb_h.weight.data[...] = w0_h
assert np.allclose(emb_h.weight.grad.data, ref_h, atol=1e-12) and np.allclose(emb_h.weight.grad.data, num_h, atol=1e-7)
assert np.array_equal(emb_h(Tensor(np.array([4.0, 2.0]))).data, w0_h[[4, 2]])
emb32_h = Embedding(5, 2, rng=rng_h)
emb32_h(np.array([1, 1, 4])).backward(np.ones((3, 2), np.float32))
assert emb32_h.weight.grad.dtype == np.float32 and emb32_h.weight.grad.data[:, 0].tolist() == [0, 2, 0, 0, 1]
for bad_h in (np.array([-1, 2]), np.array([[0], [5]])):
    try:
        emb32_h(bad_h)
        raise AssertionError(f"ids {bad_h.tolist()} are outside a 5-row table")
    except IndexError:
        pass

# %% grade_id: test-positional
# Hidden: an odd width against the formula, float64 and float32 tables, the learned table at an offset (values, and
# where its gradient lands), a window that exactly reaches max_length, windows past it refused.
tab_h = sinusoidal_table(7, 5, dtype=np.float64)
p_h, i_h = np.arange(7)[:, None], np.arange(5)[None, :]
angle_h = p_h / 10000 ** ((i_h - i_h % 2) / 5)
assert tab_h.shape == (7, 5) and tab_h.dtype == np.float64
assert np.allclose(tab_h, np.where(i_h % 2 == 0, np.sin(angle_h), np.cos(angle_h)), atol=1e-12)
assert sinusoidal_table(4, 6).dtype == np.float32
lp_h = PositionalEncoding(6, 2, learned=True, dtype=np.float64, rng=np.random.default_rng(3))
out_h = lp_h(Tensor(np.zeros((2, 3, 2)), dtype=np.float64), offset=3)
assert np.allclose(out_h.data, np.broadcast_to(lp_h.weight.data[3:6], (2, 3, 2)))
out_h.backward(np.ones((2, 3, 2)))
assert np.allclose(lp_h.weight.grad.data[3:], 2.0) and np.allclose(lp_h.weight.grad.data[:3], 0.0)
assert PositionalEncoding(4, 2)(Tensor(np.zeros((1, 4, 2))), offset=0).shape == (1, 4, 2)
assert np.allclose(PositionalEncoding(4, 2)(Tensor(np.zeros((1, 1, 2))), offset=3).data[0, 0], sinusoidal_table(4, 2)[3])
for offset_h, length_h in ((4, 3), (0, 7), (6, 1)):
    try:
        lp_h(Tensor(np.zeros((1, length_h, 2)), dtype=np.float64), offset=offset_h)
        raise AssertionError(f"positions {offset_h}..{offset_h + length_h - 1} do not fit max_length=6")
    except ValueError:
        pass

# %% grade_id: test-transformer-block
# Hidden: the pre-LN residual structure against the block's own parts (LayerNorms with different parameters), the
# input gradient against float64 central differences, the ff_dim option and the default GELU MLP, the causal mask handed
# to a non-causal attention module, checked with a change that LayerNorm does not remove.
rng_h = np.random.default_rng(1604)
blk_h = TransformerBlock(8, 2, ff_dim=12, dtype=np.float64, rng=rng_h)
for ln_h in (blk_h.ln1, blk_h.ln2):
    ln_h.weight.data[...] = rng_h.uniform(0.5, 1.5, 8)
    ln_h.bias.data[...] = rng_h.standard_normal(8) * 0.3
xb_h = rng_h.standard_normal((2, 4, 8))
xt_h = Tensor(xb_h, dtype=np.float64)
mid_h = xt_h + blk_h.attn(blk_h.ln1(xt_h))
assert np.allclose(blk_h(xt_h).data, (mid_h + blk_h.ff(blk_h.ln2(mid_h))).data, atol=1e-12), "x + attn(ln1(x)), then + ff(ln2(.))"
r_h = rng_h.standard_normal((2, 4, 8))
xg_h = Tensor(xb_h.copy(), dtype=np.float64, requires_grad=True)
(blk_h(xg_h) * Tensor(r_h, dtype=np.float64)).sum().backward()
num_h = np.zeros_like(xb_h)
for idx_h in np.ndindex(*xb_h.shape):
    xp_h, xm_h = xb_h.copy(), xb_h.copy()
    xp_h[idx_h] += 1e-6
    xm_h[idx_h] -= 1e-6
    num_h[idx_h] = ((blk_h(Tensor(xp_h, dtype=np.float64)).data - blk_h(Tensor(xm_h, dtype=np.float64)).data) * r_h).sum() / 2e-6
assert np.allclose(xg_h.grad.data, num_h, atol=1e-6), np.abs(xg_h.grad.data - num_h).max()
assert blk_h.ff[0].out_features == 12 and sum(p.size for p in blk_h.parameters()) == 4 * (64 + 8) + (8 * 12 + 12 + 12 * 8 + 8) + 4 * 8
assert isinstance(TransformerBlock(8, 2).ff[1], GELU) and TransformerBlock(8, 2).ff[0].out_features == 32
later_h = xb_h.copy()
later_h[:, 3] += rng_h.standard_normal(8)                     # not a constant shift, which LayerNorm would remove
masked_h = TransformerBlock(attention=MultiHeadAttention(8, 2, rng=rng_h), rng=rng_h)
assert np.allclose(masked_h(Tensor(later_h)).data[:, :3], masked_h(Tensor(xb_h)).data[:, :3], atol=1e-6), \
    "a non-causal attention module gets the causal mask from the block"
open_h = MultiHeadAttention(8, 2, rng=rng_h)                   # the same attention alone does see the future
assert not np.allclose(open_h(Tensor(later_h)).data[:, :3], open_h(Tensor(xb_h)).data[:, :3]), "no mask: the future leaks"

# %% grade_id: test-tinygpt
# Hidden: causal masking at every position of a batch (changing one token never moves an earlier logit), the forward
# pass against the model's own parts (final LayerNorm and head bias not at their start values), a 1-D input,
# last_only, sinusoidal positions, and the GPT-2 initialisation.
rng_h = np.random.default_rng(1605)
gpt_h = TinyGPT(vocab_size=11, d_model=16, num_heads=2, num_layers=2, max_length=10, dtype=np.float64, rng=rng_h)
gpt_h.ln_f.weight.data[...] = rng_h.uniform(0.5, 2.0, 16)
gpt_h.ln_f.bias.data[...] = rng_h.standard_normal(16)
gpt_h.head.bias.data[...] = rng_h.standard_normal(11) * 0.1
ids_h = rng_h.integers(0, 11, size=(2, 10))
base_h = gpt_h(ids_h).data
for t_h in range(10):
    changed_h = ids_h.copy()
    changed_h[:, t_h] = (changed_h[:, t_h] + 1 + t_h) % 11
    after_h = gpt_h(changed_h).data
    assert np.allclose(after_h[:, :t_h], base_h[:, :t_h], atol=1e-12), f"position {t_h} leaks into earlier logits"
    assert not np.allclose(after_h[:, t_h], base_h[:, t_h]), t_h
h_h = gpt_h.positions(gpt_h.token_embedding(ids_h))
for blk_h in gpt_h.blocks:
    h_h = blk_h(h_h)
assert np.allclose(base_h, gpt_h.head(gpt_h.ln_f(h_h)).data, atol=1e-12)
assert np.allclose(gpt_h(ids_h[0]).data, base_h[:1], atol=1e-12)
assert np.allclose(gpt_h(ids_h, last_only=True).data[:, 0], base_h[:, -1], atol=1e-12)
assert gpt_h(ids_h[:, :1], last_only=True).shape == (2, 1, 11)
sin_h = TinyGPT(vocab_size=5, d_model=8, num_heads=2, num_layers=1, max_length=6, learned_positions=False, rng=rng_h)
assert sin_h.num_parameters() == 5 * 8 + (12 * 64 + 13 * 8) + 2 * 8 + 8 * 5 + 5
assert not np.allclose(sin_h(np.array([[0, 1, 2, 3]])).data[0, -1], sin_h(np.array([[1, 0, 2, 3]])).data[0, -1], rtol=0, atol=1e-7)
mid_h = TinyGPT(vocab_size=7, d_model=64, num_heads=4, num_layers=2, rng=rng_h)
assert 0.018 < mid_h.blocks[0].attn.q_proj.weight.data.std() < 0.022
assert 0.009 < mid_h.blocks[1].attn.out_proj.weight.data.std() < 0.011 and not mid_h.head.bias.data.any()

# %% grade_id: test-lm-loss
# Hidden: the loss and its gradient against an inline float64 cross-entropy (random logits, padding in the middle),
# shift_targets on a batch of windows and on float ids, and wrong shapes refused (2-D logits, too-short windows).
rng_h = np.random.default_rng(1606)
z_h = rng_h.standard_normal((2, 4, 6)) * 3
t_h = rng_h.integers(0, 6, size=(2, 4))
t_h[0, 2] = t_h[1, 0] = -1
zt_h = Tensor(z_h, dtype=np.float64, requires_grad=True)
loss_h = LanguageModelLoss(ignore_index=-1)(zt_h, t_h)
valid_h = t_h != -1
p_h = np.exp(z_h - z_h.max(-1, keepdims=True))
p_h /= p_h.sum(-1, keepdims=True)
rows_h, cols_h = np.nonzero(valid_h)
assert np.isclose(loss_h.item(), -np.log(p_h[rows_h, cols_h, t_h[valid_h]]).mean(), rtol=1e-12)
loss_h.backward()
grad_h = p_h.copy()
grad_h[rows_h, cols_h, t_h[valid_h]] -= 1
grad_h = grad_h * valid_h[..., None] / valid_h.sum()
assert np.allclose(zt_h.grad.data, grad_h, atol=1e-12)
w_h = np.arange(15).reshape(3, 5)
in_h, tg_h = shift_targets(w_h)
assert in_h.tolist() == w_h[:, :4].tolist() and tg_h.tolist() == w_h[:, 1:].tolist()
assert shift_targets(Tensor(np.array([[1.0, 2.0]])))[1].tolist() == [[2]]
for bad_h in (np.array([[1]]), np.array([1, 2, 3])):
    try:
        shift_targets(bad_h)
        raise AssertionError(f"{bad_h.tolist()} is not a batch of windows of at least 2 tokens")
    except ValueError:
        pass
try:
    LanguageModelLoss()(Tensor(np.zeros((10, 6))), np.zeros(10, dtype=np.int64))
    raise AssertionError("logits must be (B, T, V)")
except ValueError:
    pass

# %% grade_id: test-sampling
# Hidden: ties in top-k and top-p (lower ids win), several rows at once, a row with -inf, near-zero temperature, and
# the frequencies of temperature, then top-k, then top-p against the distribution computed inline.
tie_h = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]])
assert np.isfinite(top_k_filter(tie_h, 2)).tolist() == [[False, True, True, False, False]]
assert np.isfinite(top_k_filter(tie_h, 4)).tolist() == [[False, True, True, True, True]]
assert np.array_equal(top_k_filter(tie_h, 5), tie_h) and np.array_equal(top_k_filter(tie_h, 9), tie_h)
assert np.isfinite(top_p_filter(tie_h, 0.3)).tolist() == [[False, True, True, False, False]]
assert np.isfinite(top_p_filter(tie_h, 0.9)).tolist() == [[False, True, True, True, True]]
multi_h = np.array([[0.0, 5.0, 1.0], [4.0, 0.0, -1.0], [0.0, 0.0, 9.0]])
assert greedy(multi_h).tolist() == [1, 0, 2]
assert sample_next(multi_h, temperature=1e-3, rng=np.random.default_rng(0)).tolist() == [1, 0, 2]
assert np.isfinite(top_k_filter(multi_h, 1)).sum(axis=1).tolist() == [1, 1, 1]
assert np.isfinite(top_p_filter(multi_h, 0.99)).sum(axis=1).tolist() == [2, 2, 1]
one_h = sample_next(np.array([0.0, -np.inf, 2.0]), rng=np.random.default_rng(1))
assert one_h.shape == () and int(one_h) in (0, 2)
assert 1 not in sample_next(np.tile([0.0, -np.inf, 0.0], (500, 1)), rng=np.random.default_rng(2)).tolist()
z5_h = np.log(np.array([0.4, 0.25, 0.2, 0.1, 0.05]))
draws_h = sample_next(np.repeat(z5_h[None], 20000, axis=0), temperature=2.0, top_k=4, top_p=0.8, rng=np.random.default_rng(5))
q_h = np.exp(z5_h / 2.0)
q_h[4] = 0.0                                                  # top-k 4 of the tempered distribution
q_h /= q_h.sum()
keep_h = (np.cumsum(q_h) < 0.8 - 1e-9).sum() + 1              # top-p 0.8 of what is left (already sorted)
q_h[keep_h:] = 0.0
q_h /= q_h.sum()
freq_h = np.bincount(draws_h, minlength=5) / draws_h.size
assert np.allclose(freq_h, q_h, atol=0.015), (freq_h, q_h)

# Hidden: vanishing (subnormal) temperatures are the greedy limit, never a NaN draw; nonsense temperatures are refused.
z_tiny_h = np.random.default_rng(16).standard_normal((32, 7)) * 50
for t_h in (5e-324, 1e-320, 1e-310):
    assert np.array_equal(sample_next(z_tiny_h, temperature=t_h, rng=np.random.default_rng(0)), greedy(z_tiny_h)), t_h
for t_h in (-1.0, float("nan"), float("inf")):
    try:
        sample_next(z_tiny_h, temperature=t_h)
        raise AssertionError(f"temperature {t_h} must be refused")
    except ValueError:
        pass

# %% grade_id: test-generate
# Hidden: generation against a reference loop written from the documented semantics (greedy, float64, a batch of 2,
# prompts shorter and longer than the window, several window_keep values, with and without the cache), prompts kept,
# max_new_tokens=0, and the model's mode restored.
rng_h = np.random.default_rng(1608)
g64_h = TinyGPT(vocab_size=13, d_model=16, num_heads=2, num_layers=2, max_length=8, dtype=np.float64, rng=rng_h)


def reference_h(prompt_, keep_, n_, cached_=True):
    toks_ = np.concatenate([prompt_, np.zeros((len(prompt_), n_), np.int64)], axis=1)
    T0_, L_ = prompt_.shape[1], 8
    start_ = max(0, T0_ - L_)
    with no_grad():
        for pos_ in range(T0_, T0_ + n_):
            if not cached_:
                start_ = max(0, pos_ - L_)
            elif pos_ > T0_ and pos_ - 1 - start_ == L_:
                start_ = pos_ - keep_
            toks_[:, pos_] = g64_h(toks_[:, start_:pos_]).data[:, -1].argmax(axis=-1)
    return toks_


for prompt_len_h in (5, 11):
    prompt_h = rng_h.integers(0, 13, size=(2, prompt_len_h))
    for keep_h in (1, 3, 8):
        got_h = generate_tokens(g64_h, prompt_h, 20, temperature=0, window_keep=keep_h)
        assert got_h.shape == (2, prompt_len_h + 20) and got_h.dtype == np.int64
        assert np.array_equal(got_h, reference_h(prompt_h, keep_h, 20)), (prompt_len_h, keep_h)
    got_h = generate_tokens(g64_h, prompt_h, 12, temperature=0, use_cache=False)
    assert np.array_equal(got_h, reference_h(prompt_h, 0, 12, cached_=False)), prompt_len_h
    assert np.array_equal(generate_tokens(g64_h, prompt_h, 0), prompt_h)
g64_h.train()
generate_tokens(g64_h, prompt_h[:1], 3, rng=np.random.default_rng(0))
assert g64_h.training
g64_h.eval()
generate_tokens(g64_h, prompt_h[:1], 3, rng=np.random.default_rng(0))
assert not g64_h.training

# %% grade_id: test-save-load
# Hidden: round trips of other configurations (sinusoidal positions, float64, no tokenizer; a tokenizer with
# unknown='?', ff_dim, dropout), and checkpoints whose config is incomplete, does not fit the arrays, or is of another kind.
variants_h = [TinyGPT(vocab_size=9, d_model=8, num_heads=2, num_layers=1, max_length=5, learned_positions=False,
                      dtype=np.float64, rng=np.random.default_rng(1)),
              TinyGPT(tokenizer=CharTokenizer("abc ", unknown="?"), d_model=8, num_heads=4, num_layers=2, max_length=6,
                      ff_dim=10, dropout=0.1, rng=np.random.default_rng(2))]
for i_h, m_h in enumerate(variants_h):
    m_h.save(folder / f"variant{i_h}.bin")
    back_h = TinyGPT.load(folder / f"variant{i_h}.bin")
    assert back_h.config == m_h.config and back_h.tokenizer == m_h.tokenizer, i_h
    probe_h = np.array([[0, 3, 1, 2]])
    m_h.eval()
    back_h.eval()
    assert back_h(probe_h).dtype == m_h(probe_h).dtype and np.array_equal(back_h(probe_h).data, m_h(probe_h).data), i_h
arrays_h, cfg_h = variants_h[0].state_dict(), variants_h[0].config.to_dict()
for tag_h, meta_h, kind_h in [("missing-key", {"config": {k: v for k, v in cfg_h.items() if k != "dropout"}, "tokenizer": None}, "tinygpt"),
                              ("extra-key", {"config": {**cfg_h, "bias": True}, "tokenizer": None}, "tinygpt"),
                              ("wrong-width", {"config": {**cfg_h, "d_model": 16}, "tokenizer": None}, "tinygpt"),
                              ("bad-tokenizer", {"config": cfg_h, "tokenizer": {"type": "Other"}}, "tinygpt"),
                              ("other-kind", {"config": cfg_h, "tokenizer": None}, "trainer")]:
    save_npz_checkpoint(folder / f"{tag_h}.npz", arrays_h, meta_h, kind=kind_h)
    try:
        TinyGPT.load(folder / f"{tag_h}.npz")
        raise AssertionError(f"{tag_h} must be refused")
    except CheckpointError:
        pass

# A tiny file whose config claims a far bigger model than its arrays is refused before a model is built.
for big_h in ({"d_model": 2048}, {"num_layers": 64}, {"vocab_size": 10**6}):
    save_npz_checkpoint(folder / "big.npz", arrays_h, {"config": {**cfg_h, **big_h}, "tokenizer": None}, kind="tinygpt")
    try:
        TinyGPT.load(folder / "big.npz")
        raise AssertionError(f"{big_h} does not fit the stored arrays")
    except CheckpointError:
        pass

# %% grade_id: test-training
# Hidden: TextWindows' sequential walk, random windows from every offset, fixed and resampled epochs; the trainer's
# split and data, fit(epochs=...) stopping early; the loss of a tiny model falling within a few steps on a generated corpus.
walk_h = TextWindows(np.arange(23), context=4, batch_size=2)
batches_h = list(walk_h)
assert len(walk_h) == 3 and [x.shape for x, _ in batches_h] == [(2, 4), (2, 4), (1, 4)]
assert np.array_equal(np.concatenate([x.data for x, _ in batches_h]), np.arange(20).reshape(5, 4))
assert np.array_equal(np.concatenate([y for _, y in batches_h]), np.arange(1, 21).reshape(5, 4))
assert batches_h[0][0].dtype == np.int64 and batches_h[0][1].dtype == np.int64
few_h = TextWindows(np.arange(10), context=8, batch_size=50, num_batches=2, seed=1)
assert set(np.concatenate([x.data[:, 0] for x, _ in few_h]).tolist()) == {0, 1}, "every window can be drawn"


def epoch_inputs_h(windows_, epoch_):
    windows_.set_epoch(epoch_)
    return np.concatenate([x.data for x, _ in windows_])


fixed_h = TextWindows(np.arange(50), 5, 3, num_batches=2, seed=4, resample_each_epoch=False)
moving_h = TextWindows(np.arange(50), 5, 3, num_batches=2, seed=4)
assert np.array_equal(epoch_inputs_h(fixed_h, 0), epoch_inputs_h(fixed_h, 3))
assert not np.array_equal(epoch_inputs_h(moving_h, 0), epoch_inputs_h(moving_h, 3))
corpus_h = "".join(np.random.default_rng(16).permutation(list("abcdefgh"))) * 50          # 400 characters
tiny_h = TinyGPT(tokenizer=CharTokenizer().fit(corpus_h), d_model=16, num_heads=2, num_layers=1, max_length=8,
                 rng=np.random.default_rng(3))
lmt_h = LanguageModelTrainer(tiny_h, corpus_h, iterations=30, eval_interval=10, batch_size=8, lr=1e-2, warmup=2,
                             weight_decay=0.0, eval_batches=2, progress=False, verbose=False)
assert lmt_h.train_tokens.size == 360 and lmt_h.val_tokens.size == 40 and len(lmt_h.train_data) == 10
assert np.array_equal(epoch_inputs_h(lmt_h.val_data, 0), epoch_inputs_h(lmt_h.val_data, 5)), "fixed validation windows"
assert len(lmt_h.fit(epochs=1)["epoch"]) == 1 and lmt_h.iterations_done == 10
hist_h = lmt_h.fit()
assert len(hist_h["epoch"]) == 3 and lmt_h.tokens_seen == 30 * 8 * 8
assert hist_h["train_loss"][-1] < hist_h["train_loss"][0] and hist_h["val_loss"][-1] < 0.5 * math.log(8), hist_h
# evaluate(full=True) covers every validation window once; full=False only the fixed batches.
every_h = TextWindows(lmt_h.val_tokens, 8, 8)
tiny_h.eval()
with no_grad():
    sums_h = [(LanguageModelLoss()(tiny_h(x_h), y_h).item() * y_h.size, y_h.size) for x_h, y_h in every_h]
full_h = sum(a for a, _ in sums_h) / sum(n for _, n in sums_h)
assert abs(lmt_h.evaluate("val", full=True)["loss"] - full_h) < 1e-5
assert abs(lmt_h.evaluate("val", full=False)["loss"] - lmt_h.trainer.evaluate(lmt_h.val_data)["loss"]) < 1e-9
