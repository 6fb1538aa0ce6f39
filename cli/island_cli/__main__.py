from island_cli.main import cli

cli(prog_name="island")
