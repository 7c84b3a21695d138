"""The OpenAI Batch API's work: a batch's input checked into lines (`lines.py`), the API's
rules (`service.py`), each line run as a request of its key (`execute.py`) by the runner of
every gateway process (`runner.py`), at a pace that fills idle capacity (`throttle.py`), and
`tram batches` (`cli.py`)."""

__all__: list[str] = []
