"""The progress bar: rate and ETA count only the work done since the display started."""

from tfflat_cli.output import Progress


def test_rate_leaves_out_resumed_work(capsys):
    p = Progress("sampling", 100, "samples", enabled=True)
    p.update(50)                          # 50 finished in an earlier run, resumed from disk
    p.bar.start_t -= 10.0                 # ten seconds later …
    p.update(70, "rank 3")                # … 20 more: 2 samples/s, 15 s to go
    p.bar.refresh()
    p.close()
    err = capsys.readouterr().err
    assert "70/100" in err and "2.00 samples/s" in err and "00:15" in err and "rank 3" in err, err


def test_quiet_when_not_a_terminal(capsys):
    p = Progress("epochs", None, "epochs")           # stderr is captured: not a terminal
    p.update(3, "loss 0.1")
    p.close()
    assert capsys.readouterr().err == ""
