"""Reading and writing photos: opening them safely (images), finding them (inputs), writing
files atomically (atomic), attention heatmaps (heatmap) and captions in photos (metadata)."""
