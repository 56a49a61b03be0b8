"""The ``retrlab`` command: build the data, evaluate a retriever — without opening Jupyter.

    retrlab data                 # build (or load) wiki-car and print its data card
    retrlab prepare              # build the artifacts notebooks 00-07 share, once, before a class
    retrlab eval --model bm25    # test metrics of BM25
    retrlab eval --model minilm  # ... of zero-shot all-MiniLM-L6-v2 (or a saved model folder)
    retrlab notebooks [--default] [--only 00 01]   # run notebooks headless into HTML, with wall times
    retrlab site [--default] [--out site]          # the rendered site: every notebook executed (cached)
    retrlab present simans       # a classroom dashboard (Voila, widgets only) on 127.0.0.1; or: rocketqa
    retrlab run star --seed 1    # fine-tune one strategy on the leaderboard budget, save JSON + plot
    retrlab leaderboard          # every strategy x seeds 0 1 2 (a few minutes on 2 cores), a table
    retrlab leaderboard --full --seeds 0 1 2    # all of wiki-car, 60 steps of batch 16 (~30-40 min)
    retrlab pretraining-study --protocol continued --seeds 0 1 2   # notebook 13's cached study
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings


def _load_data(args):
    from retrlab.data import load_beir, load_wikicar

    return load_beir(args.beir) if args.beir else load_wikicar(seed=args.seed)


def cmd_data(args) -> int:
    from retrlab.data import data_card, format_card

    started = time.perf_counter()
    data = _load_data(args)
    print(format_card(data_card(data)))
    print(f"(ready in {time.perf_counter() - started:.2f} s)")
    return 0


def cmd_prepare(args) -> int:
    from retrlab.artifacts import prepare

    started = time.perf_counter()
    seconds = prepare(_load_data(args), smoke=False)  # smoke runs cut the data, so their keys differ
    for name, spent in seconds.items():
        print(f"{name:<45} {spent:7.1f} s")
    print(f"(every shared artifact ready in {time.perf_counter() - started:.0f} s; notebooks now load them)")
    return 0


def cmd_eval(args) -> int:
    from retrlab.encoders import BiEncoder
    from retrlab.evaluation import MEASURES, bm25_run, dense_run, evaluate_run
    from retrlab.metrics import metrics_table, write_trec_run

    data = _load_data(args)
    tag = "_".join(args.model.split())  # a model folder's path may hold spaces; a TREC tag may not
    if args.run_file:  # a run file that cannot be written fails now, not after the evaluation
        from retrlab.cache import check_writable
        from retrlab.metrics import check_trec_fields

        check_writable(args.run_file)
        check_trec_fields(tag, data.qids(args.split), data.search_pids(args.split))
    started = time.perf_counter()
    if args.model == "bm25":
        run = bm25_run(data, args.split, k=100)
    else:
        model = BiEncoder.minilm() if args.model == "minilm" else BiEncoder.from_pretrained(args.model)
        model.passage_max_length = args.max_length
        run = dense_run(model, data, args.split, k=100)
    results = evaluate_run(run, data, args.split, MEASURES)
    print(metrics_table({f"{args.model} ({args.split})": results}))
    print(f"({len(run)} queries, {time.perf_counter() - started:.1f} s)")
    if args.run_file:
        write_trec_run(run, args.run_file, tag=tag)
        print(f"run written to {args.run_file}")
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_notebooks(args) -> int:
    from pathlib import Path

    from retrlab.notebooks import execute_notebook, find_notebooks, timing_table, write_html

    mode = "default" if args.default else "smoke"
    out = Path(args.out)
    rows = []
    from retrlab.notebooks import NOTEBOOK_DIR

    for path in find_notebooks(args.dir or NOTEBOOK_DIR, args.only):
        nb, seconds = execute_notebook(path, smoke=not args.default, timeout=args.timeout)
        target = write_html(nb, out / f"{path.stem}-{mode}.html")
        rows.append((path.stem, mode, seconds))
        print(f"{path.stem:<40} {mode:>7} {seconds:7.1f} s  -> {target}", flush=True)
    table = timing_table(rows)
    (out / f"timings-{mode}.md").write_text(table + "\n")
    print("\n" + table)
    return 0


def cmd_site(args) -> int:
    from nbclient.exceptions import CellExecutionError

    from retrlab.notebooks import NOTEBOOK_DIR
    from retrlab.site import build_site, html_manager_dir

    if args.fetch_assets:
        print(f"widgets HTML manager: {html_manager_dir()}")
        return 0
    started = time.perf_counter()
    try:
        pages = build_site(args.out, smoke=not args.default, only=args.only, folder=args.dir or NOTEBOOK_DIR,
                           timeout=args.timeout, rerun=args.rerun)
    except CellExecutionError as err:
        print(f"retrlab: error: a notebook failed, the site is not complete:\n{err}", file=sys.stderr)
        return 1
    executed = sum(not p.reused for p in pages)
    print(f"site: {args.out}/index.html, {len(pages)} pages ({executed} executed, {len(pages) - executed} "
          f"from the cache) in {time.perf_counter() - started:.0f} s")
    return 0


def cmd_present(args) -> int:
    from retrlab.present import present

    return present(args.view, port=args.port, smoke=args.smoke)


def _leaderboard(args, names: list[str], seeds: list[int]) -> int:
    """Shared by ``run`` and ``leaderboard``: budget from the flags, run, print, save."""
    import dataclasses
    from pathlib import Path

    from retrlab.data import load_beir, load_wikicar
    from retrlab.cache import atomic_write_text
    from retrlab.leaderboard import effects_markdown, effects_table, get_entry, preset, run_leaderboard

    for name in names:
        get_entry(name)  # an unknown strategy fails before the data is even loaded
    overrides = {k: v for k, v in [("steps", args.steps), ("batch_size", args.batch_size),
                                   ("max_length", args.max_length)] if v is not None}
    budget = dataclasses.replace(preset(args.smoke, args.full), **overrides)
    data = load_beir(args.beir) if args.beir else load_wikicar(seed=args.data_seed)
    print(f"{len(names)} strategies x seeds {seeds}: {budget.steps} steps x batch {budget.batch_size}, "
          f"passages at {budget.max_length} tokens", flush=True)
    board = run_leaderboard(data, budget, names, seeds, progress=True, cache=True)  # resumable
    print("\n" + board.table())
    prep = ", ".join(f"{k} {v:.0f} s" for k, v in board.prep_seconds.items())
    print(f"\nshared preparation: {prep or 'none'}; wall time {board.wall_seconds:.0f} s")
    json_path, png = board.save(Path(args.out))
    print(f"results: {json_path}\nplot:    {png}")
    effects = effects_table(board)
    if effects:  # the paper effects whose two rows this run holds
        text = effects_markdown(effects)
        print("\npaper effects (ours vs the paper's):\n" + text)
        print(f"effects: {atomic_write_text(Path(args.out) / 'effects.md', text + chr(10))}")
    return 0


def cmd_run(args) -> int:
    args.out = args.out or f"runs/{args.strategy}-s{args.seed}"
    return _leaderboard(args, [args.strategy], [args.seed])


def cmd_leaderboard(args) -> int:
    from retrlab.leaderboard import default_strategies

    return _leaderboard(args, args.strategies or default_strategies(), args.seeds)


def cmd_pretraining_study(args) -> int:
    """Build (or load) every checkpoint and protocol row of one pretraining protocol, then print the
    table and the papers' effects: notebook 13 reloads what this caches."""
    from retrlab.data import load_wikicar
    from retrlab.pretraining.comparison import effects, effects_markdown, run_studies, study_table, table_markdown

    data = load_wikicar(seed=args.data_seed)
    started = time.perf_counter()
    study = run_studies(data, tuple(args.seeds), protocols=(args.protocol,), smoke=args.smoke,
                        workers=args.workers)[args.protocol]
    print(f"\n{args.protocol} protocol, seeds {args.seeds}, budget {study.budget}:")
    print(study_table(study))
    for stage in study.stages:
        for e in effects(study, stage):
            print(f"[{stage}] {e.label}: {e.verdict}, Δ {e.gap:+.3f} [{e.low:+.3f}, {e.high:+.3f}]; per-seed gaps "
                  + ", ".join(f"{g:+.3f}" for g in e.per_seed))
    if args.markdown:
        print("\n" + table_markdown(study) + "\n\n" + effects_markdown(study))
    print(f"wall time {time.perf_counter() - started:.0f} s (rows already cached load in about a second)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _budget_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, help="training steps per strategy (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="queries per step")
    p.add_argument("--max-length", type=int, help="passage tokens, training and evaluation")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--smoke", action="store_true",
                      help="a seconds-long run that only proves the code works")
    size.add_argument("--full", action="store_true",
                      help="all of wiki-car, 60 steps of batch 16 at 64 tokens, the notebooks' artifacts")
    p.add_argument("--data-seed", type=int, default=0, help="wiki-car label/split seed")
    p.add_argument("--beir", metavar="FOLDER", help="a BEIR-format folder with train and test qrels instead")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrlab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_text in [("data", cmd_data, "build/load the data and print its card"),
                                ("prepare", cmd_prepare, "build the artifacts notebooks 00-07 share, ahead "
                                                         "of a class (about 4 minutes on 2 cores, once)"),
                                ("eval", cmd_eval, "evaluate a retriever on a split")]:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--seed", type=int, default=0, help="wiki-car label/split seed")
        p.add_argument("--beir", metavar="FOLDER", help="use a BEIR-format dataset folder instead")
        p.set_defaults(fn=fn)
        if name == "eval":
            p.add_argument("--model", default="minilm", help="bm25, minilm, or a saved model folder")
            p.add_argument("--split", default="test")
            p.add_argument("--max-length", type=int, default=128, help="passage max tokens")
            p.add_argument("--run-file", help="also write the run in TREC format here")
            p.add_argument("--json", action="store_true", help="print the metrics as JSON too")
    nb = sub.add_parser("notebooks", help="execute notebooks headless into HTML, printing wall times")
    nb.add_argument("--default", action="store_true", help="default mode (full budget) instead of smoke mode")
    nb.add_argument("--only", nargs="*", metavar="PREFIX", help="e.g. --only 00 01")
    nb.add_argument("--dir", default=None, help="the notebooks folder (default: the checkout's notebooks/)")
    nb.add_argument("--out", default="runs/notebooks", help="where the HTML and the timing table go")
    nb.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    nb.set_defaults(fn=cmd_notebooks)
    site = sub.add_parser("site", help="build the rendered site: every notebook executed (cached), an index")
    mode = site.add_mutually_exclusive_group()
    mode.add_argument("--default", action="store_true", help="default mode (the real site) instead of smoke mode")
    mode.add_argument("--smoke", action="store_true", help="smoke mode (the default; what CI builds)")
    site.add_argument("--only", nargs="*", metavar="PREFIX", help="e.g. --only 00 07")
    site.add_argument("--dir", default=None, help="the notebooks folder (default: the checkout's notebooks/)")
    site.add_argument("--out", default="site", help="the site's folder (default: site/)")
    site.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    site.add_argument("--rerun", action="store_true", help="execute every notebook even if cached")
    site.add_argument("--fetch-assets", action="store_true",
                      help="only fetch the widgets HTML manager into the cache (the one download)")
    site.set_defaults(fn=cmd_site)
    present = sub.add_parser("present", help="a classroom dashboard with Voila on 127.0.0.1 (widgets, no code)")
    present.add_argument("view", help="simans or rocketqa")
    present.add_argument("--port", type=int, default=None, help="default: a free port")
    present.add_argument("--smoke", action="store_true",
                         help="the smoke-mode pool and cross-encoder (smaller, faster to build)")
    present.set_defaults(fn=cmd_present)
    run = sub.add_parser("run", help="fine-tune one strategy on the leaderboard budget and test it")
    run.add_argument("strategy",
                     help="inbatch, bm25, star, ance, adore, rocketqa-hard, rocketqa-denoised, ar2, simans")
    run.add_argument("--seed", type=int, default=0, help="training seed (batches, dropout, sampling)")
    run.add_argument("--out", default=None, help="where results.json and leaderboard.png go "
                                                 "(default: runs/STRATEGY-sSEED)")
    _budget_flags(run)
    run.set_defaults(fn=cmd_run)
    board = sub.add_parser("leaderboard",
                           help="every strategy x several seeds on one budget: table, JSON, plot")
    board.add_argument("--strategies", nargs="+", metavar="NAME",
                       help="a subset, or a control such as ar2-no-ranker (default: every strategy, no control)")
    board.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default 0 1 2)")
    board.add_argument("--out", default="runs/leaderboard", help="where results.json and leaderboard.png go")
    _budget_flags(board)
    board.set_defaults(fn=cmd_leaderboard)
    study = sub.add_parser("pretraining-study",
                           help="build every pretraining checkpoint and protocol row of notebook 13 (cached)")
    study.add_argument("--protocol", choices=["scratch", "continued"], default="continued")
    study.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="pretraining and fine-tuning seeds")
    study.add_argument("--smoke", action="store_true", help="tiny budgets: proves the code works in seconds")
    study.add_argument("--data-seed", type=int, default=0, help="wiki-car label/split seed")
    study.add_argument("--workers", type=_positive_int, default=2,
                       help="processes that build the rows not cached yet, one thread each (default 2)")
    study.add_argument("--markdown", action="store_true", help="also print docs/RESULTS.md's tables")
    study.set_defaults(fn=cmd_pretraining_study)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"retrlab: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():  # one line per warning, not the source line that raised it
        warnings.showwarning = _show_warning
        try:
            return args.fn(args)
        except (OSError, ValueError, KeyError) as err:  # OSError: the cache folder, a file to write
            print(f"retrlab: error: {err}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
