import pandas as pd

import autopersist as ap

pd.set_option("display.width", 120)
pd.set_option("display.max_colwidth", 28)

store = ap.Store()
print(store.calls("train")[["k", "output", "run_id"]])
print()
generated = store.calls("generate", all_versions=True)
print(generated[["seed", "version", "current", "run_id"]])
print()
frame = store.frame("train").expand_all()
print(frame)
print()
df = frame.df()
print(df[["seed", "k", "train_output", "generate_1_seed", "evaluate_output"]])
print()
print(frame.where("evaluate_output < 0.27").df()[["k", "evaluate_output"]])
print()
print(frame.graph.nodes["train"]["op_id"], len(frame.graph.nodes["train"]["calls"]))
print(frame.graph.edges["train_output", "evaluate"]["label"])
print(frame.draw("pipeline.dot"))
