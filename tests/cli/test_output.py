"""The progress line: rate and ETA count only the work done since the display started."""

from tfflat_cli.output import Progress


def test_rate_leaves_out_resumed_work(capsys):
    p = Progress("sampling", 100, "samples", enabled=True)
    p.update(50)                          # 50 finished in an earlier run, resumed from disk
    p.t0 -= 10.0                          # ten seconds later …
    p.last = 0.0
    p.update(70)                          # … 20 more: 2 samples/s, 15 s to go
    err = capsys.readouterr().err
    assert "70/100 2.0 samples/s eta 15s" in err
