def print_report(output_format: str) -> str:
    return "report: (not yet)"
