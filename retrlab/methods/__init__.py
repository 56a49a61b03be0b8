"""One module per fine-tuning paper: what the method adds to the engine (``retrlab.train``).

* ``star`` — STAR (Zhan et al. 2021): static hard negatives + random negatives, pairwise loss;
* ``ance`` — ANCE (Xiong et al. 2021): negatives re-mined from the current model every M steps;
* ``adore`` — ADORE (Zhan et al. 2021): the query tower against a frozen index's live top-k;
* ``rocketqa`` — RocketQA (Qu et al. 2021): cross-batch negatives, denoising, pseudo labels;
* ``ar2`` — AR2 (Zhang et al. 2022): a retriever and a ranker trained against each other.

DPR (Karpukhin et al. 2020) is the engine's default step (``retrlab.train.contrastive_loss``);
SimANS (Zhou et al. 2022) is a sampler only (``retrlab.negatives.simans``). Losses live in
``retrlab.losses``, samplers (candidate pool -> pids) in ``retrlab.negatives``.
"""
