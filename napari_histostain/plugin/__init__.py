"""The napari plugin's npe2 contributions, without Qt: the slide reader, the predictions reader,
the writers, the sample data and the layer settings of our maps (`layers`)."""
