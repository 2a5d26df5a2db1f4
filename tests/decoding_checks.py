"""Shared test checks: text-like decoding with the KV cache is exactly greedy decoding without it; two models train
alike."""

from __future__ import annotations

import torch


def assert_cached_generate_is_greedy(model, prompts: torch.Tensor, max_new_tokens: int) -> None:
    """``generate`` with and without the cache give the same tokens, non-trivial ones, and each is the argmax of a
    plain forward pass over the whole sequence (padding after ``</s>``)."""
    config = model.config
    kwargs = {"attention_mask": torch.ones_like(prompts), "max_new_tokens": max_new_tokens, "do_sample": False,
              "pad_token_id": config.pad_token_id, "eos_token_id": config.eos_token_id}
    cached = model.generate(prompts, use_cache=True, **kwargs)
    uncached = model.generate(prompts, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    new = cached[:, prompts.shape[1] :]
    assert new.shape[1] > 1 and len(set(new.flatten().tolist())) > 1  # non-trivial continuations
    with torch.no_grad():
        logits = model(cached[:, :-1]).logits[:, prompts.shape[1] - 1 :]
    finished = torch.zeros(len(cached), dtype=torch.bool)
    for step in range(new.shape[1]):
        expected = torch.where(finished, config.pad_token_id, logits[:, step].argmax(-1))
        assert torch.equal(new[:, step], expected)
        finished |= new[:, step] == config.eos_token_id


def assert_same_loss_and_gradients(first, second, batch: dict) -> None:
    """One training forward and backward of each model on ``batch`` (same seed, for any dropout) give the same loss
    and the same gradient for every parameter, exactly."""
    results = []
    for model in (first.train(), second.train()):
        torch.manual_seed(0)
        loss = model(**batch).loss
        loss.backward()
        results.append([loss.detach()] + [p.grad for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)
