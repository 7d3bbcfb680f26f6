"""Captions for the rendered sample memes (see samples.py).

Written for this project: short, meme-like, 4-10 words each.
"""

# Every 3-word run of a caption occurs in no other caption, so a short phrase
# search identifies exactly one sample meme.
ENGLISH_CAPTIONS = """\
my code works and i have no idea why
i will fix that bug tomorrow i promise
me explaining the plot to my confused grandmother
the printer jammed again on a friday afternoon
when the wifi drops during an important call
cats knocking glasses off tables for pure science
deploying straight to production on a sunday night
that feeling when the pizza arrives early
my plants are thriving and so am i
reading the documentation before asking questions like an adult
a dog wearing sunglasses at the beach party
the meeting could have been an email
sleeping eight hours and still feeling tired somehow
brain says study but body says nap
the intern pushed directly to the main branch
grandma discovered the reply all button today
trust me i am almost an engineer
running late but the playlist is perfect
accidentally opened the front camera in class
this is fine said the dog surrounded by fire
spent three hours automating a five minute task
my sourdough starter has more friends than me
the raccoon stole my sandwich and my dignity
weekend plans include staring at the ceiling fan
haunted by the email i forgot to send
the dishwasher will not unload itself apparently
small penguin ready to fight the entire ocean
my bank account after one trip to the furniture store
they said it would only take five minutes
keyboard warrior defeated by a single semicolon
the goldfish remembers everything and judges silently
how it started versus how it is going
mom said it was my turn on the console
alarm clock betrayal level one thousand
two monitors and still no idea what is happening
the toddler has discovered how doors work
ancient scroll reveals the wifi password
bread rising faster than my career
cold coffee is just iced coffee with patience
please clap for my perfectly parallel parking
yoga instructor says breathe but i forgot how
my horoscope predicted this disaster exactly
stepped on a lego brick at midnight again
the squirrel outside has a better work ethic
leftover lasagna tastes better on the third day
when the teacher says pick your own partners
professional overthinker with twelve years of experience
i came i saw i made it awkward
gravity is the reason i cannot have nice things
unsubscribing from newsletters as a form of therapy
waiting for the kettle like it owes me money
my laptop fan sounds like a jet engine
the bus driver waved and left without me
vegetables are just salad that lost its way
one more episode then bed said nobody honest
the group project where i did everything
shopping cart with one wobbly wheel chose violence
the smoke alarm battery dies only at night
found five dollars in last winter jacket
typing with confidence then deleting everything
the goat climbed the tree and refused to leave
my houseplant filed a complaint about the lighting
left the stove on anxiety activated
microwave beeping at me like a disappointed parent
tried to be healthy and ate a salad pizza
tax season hits different every single year
owl at three in the morning asking who
ordered a bicycle online and received a unicycle
the elevator music stuck in my head forever
crying over spilled milk and spilled cereal too
swimming pool closed due to excessive splashing
my autocorrect has a secret vendetta against me
the moon is just a nightlight for owls
dinosaurs never had to pay rent
library book returned twelve years late with apologies
the cat sits exactly where the homework is
snail mail delivered by an actual snail
toaster settings range from bread to charcoal
hamster running marathons while i skip the gym
the remote control vanished into another dimension
accidentally liked a photo from nine years ago
socks disappear in the dryer to start new lives
pineapple on pizza debate ended our friendship
the weather app lied to me personally
sandcastle engineers hate this one simple wave
robot vacuum trapped under the sofa since tuesday
astronaut cat ready for the first moon nap
spreadsheet with forty tabs and zero answers
bees working overtime while i check my phone
the wizard forgot his spell book at home
taco tuesday moved to wednesday chaos everywhere
knight in shining armor rusted in the rain
my password expired while i was typing it
volcano scientist says this is totally normal
parrot repeats my secrets to the neighbors
marshmallow roasting expert since the age of four
the penguin waddled into a job interview
pirates refuse to use the map app
jellyfish living without a brain and thriving
the llama spits at anyone who says monday""".splitlines()

# German, Spanish, French and Portuguese: diacritics must survive OCR and search.
FOREIGN_CAPTIONS = [
    "wenn der Kaffee endlich wirkt und alles läuft",
    "Grüße aus dem Büro am späten Freitagabend",
    "mañana empiezo el gimnasio lo prometo de verdad",
    "cuando el café ya no funciona más",
    "déjà lundi et je suis encore fatigué",
    "ça marche sur ma machine mais pas ailleurs",
    "não acredito que já é segunda outra vez",
    "a preguiça venceu a reunião das nove horas",
]

# Rendered without spaces, the way real memes often are; ``text`` keeps the spaces.
SPACELESS_CAPTION = "one does not simply walk into mordor"
