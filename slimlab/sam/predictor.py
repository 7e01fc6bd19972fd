SamPredictor = None
