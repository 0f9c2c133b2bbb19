"""The population statement: sequential chips, stated confidence, certification with repair."""

import numpy as np
import pytest

from accuracy.population import FAILS, HOLDS, UNDECIDED, PopulationPlan, bounds, population_statement


def sampler(mean, sd, rng):
    return lambda seeds: rng.normal(mean, sd, len(seeds))


def chips_only(**options):
    """A plan about the chips on the measured images (per-chip drops, no per-sample term)."""
    return PopulationPlan(population="chips", **options)


def test_plan_looks_and_seeds():
    plan = chips_only(first_chips=4, batch_chips=4, max_chips=14, seed_start=1000)
    assert plan.chip_counts == (4, 8, 12, 14) and plan.looks == 4
    assert plan.alpha_per_look == pytest.approx(0.05 / 4)
    assert plan.all_seeds() == tuple(range(1000, 1014))
    with pytest.raises(ValueError, match="unknown population-plan key"):
        PopulationPlan.of({"chips": 3})
    with pytest.raises(ValueError, match="criterion"):
        PopulationPlan(criterion="median")
    with pytest.raises(ValueError, match="population"):
        PopulationPlan(population="wafers")
    with pytest.raises(ValueError, match="draw"):
        PopulationPlan(draw="every")


def test_clear_cases_decide_at_the_first_look_and_borderline_runs_to_the_cap():
    plan = chips_only()
    rng = np.random.default_rng(0)
    seen = []

    def chips(seeds):
        seen.append(seeds)
        return rng.normal(0.2, 0.1, len(seeds))

    statement = population_statement(chips, 1.0, plan)
    assert statement.decision == HOLDS and statement.chips == 4 and seen == [(1000, 1001, 1002, 1003)]
    assert statement.upper_bound <= 1.0 and statement.seeds == (1000, 1001, 1002, 1003)
    statement = population_statement(sampler(3.0, 0.1, rng), 1.0, plan)
    assert statement.decision == FAILS and statement.chips == 4 and statement.lower_bound > 1.0
    statement = population_statement(lambda seeds: [0.5 + (s % 2) for s in seeds], 1.0, plan)  # mean 1.0 exactly
    assert statement.decision == UNDECIDED and statement.chips == plan.max_chips
    assert statement.lower_bound <= 1.0 < statement.upper_bound


def test_chips_are_added_in_batches_without_repeating_a_seed():
    plan = chips_only(first_chips=3, batch_chips=2, max_chips=7, seed_start=5)
    asked = []

    def chips(seeds):
        asked.append(seeds)
        return [1.0 + 0.3 * (s % 2) for s in seeds]  # straddles the threshold: never decided

    statement = population_statement(chips, 1.1, plan)
    assert asked == [(5, 6, 7), (8, 9), (10, 11)]
    assert statement.chips == 7 and statement.decision == UNDECIDED


def test_a_statement_drawn_per_statement_has_its_own_chips_outside_the_shared_ones():
    plan = chips_only(draw="per_statement", first_chips=3, batch_chips=2, max_chips=7, seed_start=5)
    first, other = plan.seeds(7, "net/0110/86400.0"), plan.seeds(7, "net/0111/86400.0")
    assert first == plan.seeds(7, "net/0110/86400.0") and not set(first) & set(other)  # reproducible, independent
    shared = set(chips_only(first_chips=3, batch_chips=2, max_chips=7, seed_start=5).all_seeds())
    for seeds in (first, other):
        assert not set(seeds) & shared and all(seed in plan.seed_range() for seed in seeds)
        assert seeds == tuple(range(seeds[0], seeds[0] + 7)) and (seeds[0] - 5) % 7 == 0
    with pytest.raises(ValueError, match="needs the statement's key"):
        plan.seeds(3)
    asked = []

    def chips(seeds):
        asked.append(seeds)
        return [1.0 + 0.3 * (s % 2) for s in seeds]

    statement = population_statement(chips, 1.1, plan, key="net/0110/86400.0")
    assert sum(asked, ()) == first and statement.seeds == first and statement.draw == "per_statement"


def test_one_lucky_draw_of_chips_is_not_shared_by_every_mapping():
    """Chips differ the same way for every mapping (a chip's programming noise is the chip's). When
    the shared chips happen to be lucky, every mapping just above the threshold is declared holding;
    drawn per statement, each mapping's chance is its own."""
    rng = np.random.default_rng(3)
    luck = {}  # seed -> the chip's offset, the same for every mapping

    def chip(seed):
        if seed not in luck:
            luck[seed] = -0.8 if 1000 <= seed < 1016 else float(rng.normal(0.0, 0.5))
        return luck[seed]

    def mapping_drops(mapping):  # true mean drop 1.05 over the chip population, threshold 1
        return lambda seeds: [1.05 + chip(s) + 0.1 * np.sin(mapping * 7 + s) for s in seeds]

    wrong = {}
    for draw in ("shared", "per_statement"):
        plan = chips_only(draw=draw)
        wrong[draw] = np.mean([population_statement(mapping_drops(m), 1.0, plan, key=f"net/{m}/1.0").holds
                               for m in range(100)])
    assert wrong["shared"] == 1.0 and wrong["per_statement"] <= 0.10


@pytest.mark.parametrize("criterion, true_value", [("mean", "mean"), ("quantile", "quantile")])
def test_a_mapping_just_above_its_threshold_is_declared_holding_at_most_one_minus_confidence_of_the_time(
        criterion, true_value):
    # Chip drops ~ N(mu, 1); the criterion's true value sits 0.05 above the threshold, so every
    # "holds" is wrong. Over 2,000 sequential tests the wrong-holds rate must stay below 5%
    # (Bonferroni over looks makes it far lower; a bound without the t quantile or without the
    # per-look split fails this).
    plan = chips_only(criterion=criterion, quantile=0.9)
    rng = np.random.default_rng(1)
    threshold = 1.0
    from scipy import stats

    offset = stats.norm.ppf(0.9) if true_value == "quantile" else 0.0
    mu = threshold + 0.05 - offset
    wrong = sum(population_statement(sampler(mu, 1.0, rng), threshold, plan).holds for _ in range(2000))
    assert wrong / 2000 <= 0.05


def test_the_test_has_power_when_the_mapping_is_clearly_within():
    plan = chips_only()
    rng = np.random.default_rng(2)
    decisions = [population_statement(sampler(0.0, 1.0, rng), 2.0, plan).decision for _ in range(200)]
    assert decisions.count(HOLDS) / 200 >= 0.95


def test_quantile_bounds_are_wider_than_mean_bounds_and_grow_with_spread():
    drops = [0.1, 0.5, 0.3, 0.9, 0.4, 0.2]
    mean_lower, mean_upper = bounds(drops, chips_only(criterion="mean"))
    q_lower, q_upper = bounds(drops, chips_only(criterion="quantile", quantile=0.9))
    assert q_upper > mean_upper > np.mean(drops) > mean_lower
    assert q_lower > mean_lower  # the 90% quantile lies above the mean
    wider = bounds([2 * d for d in drops], chips_only(criterion="mean"))
    assert wider[1] - np.mean(drops) * 2 > mean_upper - np.mean(drops)


def image_sampler(mean, chip_sd, sample_sd, samples, rng):
    """Per-sample drops d[c, i] = mean + chip effect + sample effect + noise, on ONE sample of
    images drawn once per statement and shared by every chip (as a certificate measures)."""
    image_effects = rng.normal(0.0, sample_sd, samples)

    def chips(seeds):
        chip_effects = rng.normal(0.0, chip_sd, (len(seeds), 1))
        return mean + chip_effects + image_effects[None, :] + rng.normal(0.0, 5.0, (len(seeds), samples))
    return chips


@pytest.mark.parametrize("criterion", ["mean", "quantile"])
def test_the_image_sample_is_part_of_the_population(criterion):
    # Drops whose mean over the population of chips AND images sits 0.05 above the threshold, with
    # an image-sampling error (SE 0.6 points over 1,000 images) larger than the chips' spread (0.2):
    # a statement that takes the measured images as given declares these mappings holding far more
    # than 5% of the time; one with the images' error stays within 5%.
    from scipy import stats

    rng = np.random.default_rng(3)
    threshold, chip_sd = 1.0, 0.2
    offset = stats.norm.ppf(0.9) * chip_sd if criterion == "quantile" else 0.0
    mu = threshold + 0.05 - offset
    wrong = {}
    for population in ("chips", "chips_and_images"):
        plan = PopulationPlan(criterion=criterion, population=population)
        wrong[population] = np.mean([population_statement(image_sampler(mu, chip_sd, 19.0, 1000, rng), threshold,
                                                          plan).holds for _ in range(400)])
    assert wrong["chips_and_images"] <= 0.05 < 0.15 <= wrong["chips"]


def test_per_sample_drops_give_the_chips_bound_from_their_row_means_and_widen_with_the_images():
    rng = np.random.default_rng(4)
    per_sample = 0.5 + rng.normal(0.0, 10.0, (6, 500))
    chip_plan, both = chips_only(), PopulationPlan()
    assert bounds(per_sample, chip_plan) == pytest.approx(bounds(per_sample.mean(axis=1), chip_plan))
    lower, upper = bounds(per_sample, both)
    assert lower < bounds(per_sample, chip_plan)[0] and upper > bounds(per_sample, chip_plan)[1]
    with pytest.raises(ValueError, match="per-sample drops"):
        bounds(per_sample.mean(axis=1), both)
    statement = population_statement(lambda seeds: 0.1 + rng.normal(0.0, 1.0, (len(seeds), 400)), 1.0, both)
    assert statement.holds and statement.samples == 400 and statement.population == "chips_and_images"
    # independent noise only: the samples' drops averaged over 4 chips have SD 1 / sqrt(4)
    assert statement.sample_se == pytest.approx(1.0 / np.sqrt(4) / np.sqrt(400), rel=0.2)


@pytest.mark.usefixtures("fashion")
def test_certification_repairs_until_the_statement_holds_on_unseen_chips_and_images():
    from accuracy.noise import NoiseConfig
    from accuracy.oracle import AccuracyOracle
    from agents.verify import Certifier, certify_and_repair
    from envs.tasks import build_task
    from workloads.registry import NetworkSpec

    spec = NetworkSpec.zoo("lenet5")
    task = build_task("lenet5")
    oracle = AccuracyOracle(spec, NoiseConfig(name="lionheart"), images=300, image_offset=1000, seeds=(1000,))
    certifier = Certifier(oracle, PopulationPlan(first_chips=3, batch_chips=3, max_chips=6))
    everything = task.cost.analog_capable.copy()
    certified = certify_and_repair(task, everything, 31_536_000.0, 0.3, certifier)
    assert certified.statement.holds and certified.statement.upper_bound <= 0.3
    assert certified.repaired_layers == int(everything.sum() - certified.mapping.sum()) >= 1
    assert certified.chip_passes == certifier.chip_passes >= 3 * (certified.repaired_layers + 1)
    assert not (certified.mapping & ~everything).any()  # repair only moves layers to digital
    nothing = certifier(np.zeros(len(everything), bool), 86_400.0, 1.0)
    assert nothing.holds and nothing.chips == 0
    # the statement's chips and images are the certifier's, none of the searches' (seeds 0, 1; images [0, 1000))
    assert min(certified.statement.seeds, default=1000) >= 1000 and oracle.image_offset == 1000


@pytest.mark.usefixtures("fashion")
def test_the_certifier_draws_each_mappings_chips_from_the_network_mapping_and_time():
    from accuracy.noise import NoiseConfig
    from accuracy.oracle import AccuracyOracle
    from agents.verify import Certifier
    from envs.tasks import build_task
    from workloads.registry import NetworkSpec

    task = build_task("lenet5")
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=100, image_offset=1000,
                            seeds=(1000,))
    plan = PopulationPlan(draw="per_statement", first_chips=2, batch_chips=1, max_chips=2)
    certifier = Certifier(oracle, plan)
    one, two = (np.flatnonzero(task.cost.analog_capable)[:2])
    first, second = np.zeros(len(task.cost.tiles), bool), np.zeros(len(task.cost.tiles), bool)
    first[one], second[two] = True, True
    statements = [certifier(first, 86_400.0, 5.0), certifier(second, 86_400.0, 5.0), certifier(first, 3600.0, 5.0)]
    assert len({s.seeds for s in statements}) == 3 and all(s.draw == "per_statement" for s in statements)
    assert statements[0].seeds == plan.seeds(2, "lenet5/" + "".join("1" if a else "0" for a in first) + "/86400.0")
    assert certifier(first, 86_400.0, 2.0).seeds == statements[0].seeds  # the threshold does not redraw


def test_repair_finds_the_fewest_layers_to_move_by_binary_search():
    from accuracy.population import PopulationStatement
    from agents.verify import certify_and_repair
    from envs.tasks import build_task

    task = build_task("vgg11", progress=False)
    everything = task.cost.analog_capable.copy()
    calls = []

    class AtMostThreeAnalog:  # a statement that holds exactly when at most 3 layers are analog
        chip_passes = 0

        def __call__(self, mapping, t_s, threshold):
            calls.append(int(mapping.sum()))
            self.chip_passes += 4
            decision = "holds" if mapping.sum() <= 3 else "fails"
            return PopulationStatement(decision, "mean", 0.95, threshold, 4, (), (), 0.0, 0.0, 0.0, 0.0)

    certified = certify_and_repair(task, everything, 86_400.0, 1.0, AtMostThreeAnalog())
    assert certified.mapping.sum() == 3 and certified.repaired_layers == everything.sum() - 3
    sensitivity = task.profile.at(86_400.0)
    kept = sensitivity[certified.mapping]
    moved = sensitivity[everything & ~certified.mapping]
    assert kept.max() <= moved.min()  # the most sensitive layers went digital
    assert len(calls) <= 2 + int(np.ceil(np.log2(everything.sum())))  # not one statement per layer
