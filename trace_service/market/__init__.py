"""Market supply monitoring (生活必需品市场监测): daily figures per market and product kept by the
projection, the supply rules judged as the data arrives and by the clock, and the supply series API."""
