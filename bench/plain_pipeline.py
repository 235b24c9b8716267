"""The default pipeline's code as one plain Python script: the floor for bench/pipeline.py.

Same calls as notebooks/*.ipynb, in one process, with MLflow logging; no notebooks, no record.
"""

import sys
from pathlib import Path

import mlflow

from nbmill import package, tracking
from nbmill_example import diabetes


def main(out: Path, project: Path) -> None:
    # prep
    train, test = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    diabetes.save(train, out / "data" / "train.csv")
    diabetes.save(test, out / "data" / "test.csv")
    # train
    mlflow.set_tracking_uri(tracking.tracking_uri(project))
    mlflow.set_experiment("bench-plain")
    with mlflow.start_run():
        model = diabetes.fit(diabetes.read(out / "data" / "train.csv"), alpha=1.0)
        mlflow.log_params({"alpha": 1.0, "rows_train": len(train)})
        diabetes.save_model(model, train, out / "model")
        diabetes.log_model(model, train)
        # evaluate
        model = diabetes.load_model(out / "model")
        metrics = diabetes.evaluate(model, diabetes.read(out / "data" / "test.csv"))
        mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items()})
        table = diabetes.predictions(model, test)
        (out / "eval").mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "eval" / "predictions.csv", index=False)
        diabetes.plot_predictions(table).savefig(out / "eval" / "predicted_vs_actual.png", dpi=100)
    # deploy
    package.package_model(out / "model", out / "package", project / "environment.yml")
    packaged = diabetes.load_model(out / "package" / "model")
    gap = abs(packaged.predict(test[diabetes.FEATURES]) - model.predict(test[diabetes.FEATURES]))
    assert gap.max() < 1e-9
    print(f"test_r2={metrics['r2']:.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
