# (a) as stock JupyterHub ships: each server a child of the hub that switches to the user's account
# (LocalProcessSpawner), for the class rows as shipped (bench.py SHIPPED); the users are real accounts.
load_subconfig("/mnt/bench/configs/stock_chp.py")  # noqa: F821
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "localprocess"
