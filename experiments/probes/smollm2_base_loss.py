"""Run: .venv/bin/python experiments/probes/smollm2_base_loss.py

SmolLM2 base model on tweet-sentiment-gen's test split (150): the true completion's loss split into the label word
and the end-of-sequence token, and the probability mass the three label words get after the prompt."""
import torch
from intrinsic_dim.tasks import load_task
from intrinsic_dim.models import load_model

torch.set_num_threads(1)
task = load_task("tweet-sentiment-gen", max_train=1000, max_eval=150, seed=0, metric="loss")
loaded = load_model("smollm2-135m", task, seed=0, max_length=64)
model = loaded.model.eval()
enc = loaded.encode
split = task.test
word_nll, eos_nll, mass = [], [], []
with torch.no_grad():
    for s in range(0, len(split), 16):
        idx = list(range(s, min(s + 16, len(split))))
        for i in idx:
            prompt, completion = split.texts[i]
            t = enc.target_ids(completion)
            ctx = enc.context_ids(prompt, len(t))
            ids = torch.tensor([ctx + t])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            word_nll.append(-logp[len(ctx) - 1, t[0]].item())
            eos_nll.append(-logp[len(ctx), t[1]].item())
            first = [enc.target_ids(c)[0] for c in task.choices]
            mass.append(logp[len(ctx) - 1, first].exp().sum().item())
n = len(word_nll)
print(f"base model, {n} test tweets: label word {sum(word_nll)/n:.3f} nats, end of sequence {sum(eos_nll)/n:.3f} nats, "
      f"per token {(sum(word_nll)+sum(eos_nll))/(2*n):.3f}; probability mass on the three label words after the prompt {sum(mass)/n:.3f}")
