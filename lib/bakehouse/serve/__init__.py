"""`doit serve`: the bake service. Baker's HTTP API, Spinnaker's bakery API and a page, over
the repository's own graph, decisions and registry; bakes run as `doit bake:NAME`."""
