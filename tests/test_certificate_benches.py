"""The certificate's benchmarks refuse rows the comparison does not have, with the command to make them."""

import pytest

from bench import bench_certificate_coverage, bench_image_gap, bench_recertify


@pytest.mark.parametrize("main, argv", [
    (bench_image_gap.main, ["--network", "resnet20", "--method", "no_such_method"]),
    (bench_certificate_coverage.main, ["--network", "resnet20", "--method", "no_such_method"]),
    (bench_recertify.main, ["--network", "no_such_network"]),
])
def test_a_missing_row_is_a_clear_error(main, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "python -m bench.bench_compare --networks" in error and "Traceback" not in error


def test_coverage_bench_refuses_too_few_chips(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_certificate_coverage.main(["--chips", "4"])
    assert exit_info.value.code == 2 and "--chips must be >= 8" in capsys.readouterr().err
