"""benchmarks/bench_compose.py prints the three timings and the model's composition setting."""

from __future__ import annotations

from helpers import load_benchmark, tiny_ldm_pipeline


def test_bench_compose_times_one_object_two_composed_and_two_in_one_pass(
    monkeypatch, fake_text_encoder, capsys
):
    import kinetoscope

    pipe = tiny_ldm_pipeline(fake_text_encoder)
    pipe.defaults.update(compose_objects=True, compose_candidates=2)
    made = []
    call = type(pipe).__call__

    def counting(self, prompt, **options):
        out = call(self, prompt, **options)
        made.append((prompt, len(out.frames), "composed_from" in out.frames[0].metadata))
        return out

    monkeypatch.setattr(type(pipe), "__call__", counting)
    monkeypatch.setattr(kinetoscope, "load", lambda name: pipe)
    bench = load_benchmark("bench_compose")
    assert bench.main(["--model", "tiny", "--threads", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for line in ("one object:", "two objects, model default:", "two objects, one pass:"):
        assert line in out
    assert "(compose_objects True, k 2)" in out and "peak RSS" in out
    # the timed two-object calls: composed by default, in one pass when asked
    timed = [m for m in made if m[0] == bench.TWO][-2:]
    assert [m[2] for m in timed] == [True, False]
